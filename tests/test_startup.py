"""A map starts lean: what the first result of ``papy.imap`` imports, and how a
task's function travels to workers that are forked, spawned or remote.

Each case runs a small script in a fresh interpreter (what a user's script
sees), so ``sys.modules`` tells exactly what papy imported.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)


def run_script(tmp_path, body: str) -> str:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=100, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(autouse=True)
def _once(sched_implementation):
    if sched_implementation.is_pure_python:
        pytest.skip("runs once, in the [c] instance: a fresh interpreter picks its own core")


def test_the_first_result_imports_neither_cloudpickle_nor_logging(tmp_path):
    out = run_script(
        tmp_path,
        """
        import sys
        import papy

        def square(x):          # defined in __main__: forked workers find it
            return x * x

        if __name__ == "__main__":
            assert list(papy.imap(square, range(10), start_method="fork")) == [
                x * x for x in range(10)
            ]
            print(sorted({"cloudpickle", "logging", "multiprocessing.connection"}
                         & set(sys.modules)))
        """,
    )
    assert out.split("\n")[0] == "[]"


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_main_functions_reach_spawned_workers_by_value(tmp_path, method):
    out = run_script(
        tmp_path,
        f"""
        import sys
        import papy

        if __name__ == "__main__":
            def inside_the_guard(x):   # not in the module a spawned worker imports
                return -x

            print(list(papy.imap(inside_the_guard, range(5), start_method={method!r})))
            print("cloudpickle" in sys.modules)
        """,
    )
    assert out.split("\n")[:2] == ["[0, -1, -2, -3, -4]", "True"]


def test_a_replaced_worker_of_a_forked_map_gets_what_it_can_load(tmp_path):
    """Forked at start, a worker that dies may be replaced by a forkserver's (the map
    runs threads by then, Python 3.12+): it gets the task by value."""
    out = run_script(
        tmp_path,
        """
        import os
        import papy

        if __name__ == "__main__":
            def die_on_three(x):
                if x == 3:
                    os._exit(1)
                return x

            got = []
            it = papy.IMap(die_on_three, range(8), worker_num=2, chunksize=1)
            while True:
                try:
                    got.append(next(it))
                except StopIteration:
                    break
                except papy.WorkerLostError:
                    got.append("lost")
            it.stop()
            print(got)
        """,
    )
    assert out.split("\n")[0] == "[0, 1, 2, 'lost', 4, 5, 6, 7]"


def test_logging_configured_by_the_application_shows_papys_records(tmp_path):
    out = run_script(
        tmp_path,
        """
        import logging
        import sys
        import papy

        logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(message)s")

        def square(x):
            return x * x

        if __name__ == "__main__":
            list(papy.imap(square, range(3), worker_type="thread", name="lean"))
        """,
    )
    assert "papy lean started" in out


def test_papy_picks_forkserver_when_fork_would_copy_running_threads(monkeypatch):
    """The choice itself (the fork-from-a-threaded-process warning does not fire on
    every Python: 3.12.1 and 3.13.0 drop it after a successful fork)."""
    import multiprocessing
    import threading

    from papy._pools.process import ProcessPool

    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "fork")
    release = threading.Event()
    extra = threading.Thread(target=release.wait, daemon=True)
    extra.start()
    try:
        pool = ProcessPool(1)
        method = pool._context().get_start_method()
        assert method == ("forkserver" if sys.version_info >= (3, 12) else "fork")
        chosen = ProcessPool(1, start_method="fork")._context().get_start_method()
        assert chosen == "fork"  # a method given is used as given
    finally:
        release.set()
        extra.join()
    pool = ProcessPool(1)
    if threading.active_count() == 1:
        assert pool._context().get_start_method() == "fork"


def test_the_forkserver_preloads_the_workers_modules(tmp_path):
    """Under forkserver every worker of every map would import papy's worker loop
    and cloudpickle itself (65-125 ms before its first item, which a short
    timeout then spent on imports): the forkserver imports them once, and the
    application's own preload list is kept."""
    out = run_script(
        tmp_path,
        """
        import multiprocessing
        from multiprocessing import forkserver

        def square(x):
            return x * x

        if __name__ == "__main__":
            import papy  # not at the top: the forkserver's __main__ does not import papy

            multiprocessing.set_forkserver_preload(["__main__", "json"])  # the application's
            assert list(papy.imap(square, range(3), start_method="forkserver")) == [0, 1, 4]
            server = forkserver._forkserver
            print(sorted(server._preload_modules))
            with open(f"/proc/{server._forkserver_pid}/maps") as maps:
                print("compiled core in the forkserver:", "papy/_sched." in maps.read())
        """,
    )
    preload, core = out.splitlines()[:2]
    assert preload == str(sorted(["__main__", "json", "papy._pools._child", "cloudpickle"]))
    assert core == "compiled core in the forkserver: True"
