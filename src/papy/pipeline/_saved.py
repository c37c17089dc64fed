"""Saving a pipeline's definition to a file and loading it in another process.

What is saved is the *definition*, never the run: every Piper (its Worker and
options), every IMap it runs on (the constructor settings; IMaps shared by
several Pipers stay shared), the nodes' ``branch`` and ``xtra`` and the pipes,
in the order they were added. Loading builds new, unstarted objects that run
the same pipeline: ``start(datas)`` as usual.

The file is a pickle (a format name and version first, so that another file is
refused with a clear message). Functions importable by the loading process
travel by reference; functions of the saving script (``__main__``), lambdas
and closures travel by value. Like the original's generated code, loading a
file runs code from it: load only files you trust.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from .errors import PlumberError
from .piper import Piper

FORMAT = "papy-pipeline"
VERSION = 1

_PIPER_OPTIONS = ("consume", "produce", "spawn", "timeout", "branch", "debug", "name", "track")


def _imap_settings(imap: Any) -> tuple[type, dict[str, Any]]:
    """The class and constructor keywords of an IMap that behaves like ``imap``."""
    if imap.worker_type == "executor":
        raise PlumberError(
            f"the IMap {imap.name!r} runs on an executor object, which cannot be saved; "
            "give the loaded pipeline its IMaps or executors anew"
        )
    return type(imap), imap.settings()


def describe(dagger: Any) -> dict[str, Any]:
    """The definition of ``dagger`` as plain data (Workers and classes inside)."""
    imaps: list[Any] = []
    pipers: list[dict[str, Any]] = []
    index: dict[Piper, int] = {}
    for piper in dagger:
        imap_index = None
        if piper.imap is not None:
            for i, seen in enumerate(imaps):
                if seen is piper.imap:
                    imap_index = i
                    break
            else:
                imaps.append(piper.imap)
                imap_index = len(imaps) - 1
        entry = {key: getattr(piper, key) for key in _PIPER_OPTIONS}
        entry["repeat"] = piper.repeat
        entry["worker"] = piper.worker
        entry["imap"] = imap_index
        index[piper] = len(pipers)
        pipers.append(entry)
    nodes = [(index[p], node.branch, dict(node.xtra)) for p, node in dagger.items()]
    edges = sorted(
        ((down, up) for down in dagger for up in dagger[down]),
        key=lambda edge: dagger._seq.get(edge, 0),
    )
    pipes = [(index[up], index[down]) for down, up in edges]
    return {
        "format": FORMAT,
        "version": VERSION,
        "imaps": [_imap_settings(imap) for imap in imaps],
        "pipers": pipers,
        "nodes": nodes,
        "pipes": pipes,
    }


def save(dagger: Any, filename: str | os.PathLike[str]) -> None:
    """Write the definition of ``dagger`` to ``filename`` (replaced atomically)."""
    from .._serialize import dumps_portable

    try:
        data = dumps_portable(describe(dagger))
    except PlumberError:
        raise
    except Exception as exc:
        raise PlumberError(f"the pipeline cannot be saved: {exc}") from exc
    path = os.fspath(filename)
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def read(filename: str | os.PathLike[str]) -> dict[str, Any]:
    """The definition stored in ``filename``; PlumberError if it is not one."""
    with open(filename, "rb") as handle:
        try:
            data = pickle.load(handle)
        except Exception as exc:
            raise PlumberError(
                f"{os.fspath(filename)!r} is not a saved papy pipeline: {exc}"
            ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlumberError(f"{os.fspath(filename)!r} is not a saved papy pipeline")
    if data.get("version") != VERSION:
        raise PlumberError(
            f"{os.fspath(filename)!r} was saved in format version {data.get('version')}; "
            f"this papy reads version {VERSION}"
        )
    return data


def build(target: Any, data: dict[str, Any]) -> Any:
    """Add the Pipers and pipes of ``data`` to the Dagger ``target``; return it."""
    imaps = [cls(**settings) for cls, settings in data["imaps"]]
    pipers: list[Piper] = []
    for entry in data["pipers"]:
        options = {key: entry[key] for key in _PIPER_OPTIONS}
        imap = imaps[entry["imap"]] if entry["imap"] is not None else False
        pipers.append(Piper(entry["worker"], parallel=imap, repeat=entry["repeat"], **options))
    for i, branch, xtra in data["nodes"]:
        target.add_node(pipers[i], xtra or None, branch)
    for up, down in data["pipes"]:
        target.add_pipe((pipers[up], pipers[down]))
    return target
