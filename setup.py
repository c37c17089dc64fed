"""Build script: compiles the scheduling core ``papy._sched`` with Cython.

``PAPY_NO_EXTENSIONS=1`` builds a pure-Python package (the twin core is then
selected at run time). Otherwise a missing Cython or a failing compile is an
error: papy never installs the slow path silently.

The compiled core is linked stripped (no symbol table, no debug information;
on Linux about 0.2 MB instead of 1.2-1.6 MB, since Python's own compiler flags
include ``-g``): ``-s`` on Linux and other ELF platforms, ``-Wl,-S -Wl,-x`` on
macOS; MSVC keeps debug information out of the ``.pyd`` anyway. Release wheels
get this with no extra setting. Two switches keep the symbols:

* ``PAPY_DEBUG_BUILD=1``: a debug build (``-O0 -g3``, assertions on), not stripped;
* ``PAPY_NO_STRIP=1``: an optimised build that keeps its symbols (profilers, gdb).
"""

import os
import sys

from setuptools import setup


def _flag(name):
    """An on/off environment variable, read as papy._scheduler reads them: unset,
    empty, ``0``, ``false``, ``no``, ``off`` are off; anything else is on."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


NO_EXTENSIONS = _flag("PAPY_NO_EXTENSIONS") or sys.implementation.name != "cpython"


def _strip_args(debug):
    """Linker arguments that strip the compiled core (none for a debug build)."""
    if debug or _flag("PAPY_NO_STRIP"):
        return []
    if sys.platform == "darwin":
        return ["-Wl,-S", "-Wl,-x"]  # no debug information, no local symbols
    if sys.platform == "win32":
        return []  # MSVC writes debug information to a separate .pdb, if at all
    return ["-s"]  # GCC and Clang drivers: strip all symbols (the dynamic ones stay)


def _extensions():
    if NO_EXTENSIONS:
        print("*********************\n* Pure Python build *\n*********************")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        raise SystemExit(
            "papy: building the compiled scheduler needs Cython>=3.0 "
            f"({exc}). Install Cython, or set PAPY_NO_EXTENSIONS=1 for a pure-Python build."
        ) from exc
    from setuptools import Extension

    print("**********************\n* Accelerated build *\n**********************")
    debug = _flag("PAPY_DEBUG_BUILD")
    strip = _strip_args(debug)
    how = f"stripped ({' '.join(strip)})" if strip else "with its symbols"
    print(f"papy: compiling the core {'for debugging' if debug else 'optimised'}, linked {how}")
    ext = Extension(
        "papy._sched",
        ["src/papy/_sched.pyx"],
        language="c++",
        extra_compile_args=(["-O0", "-g3", "-UNDEBUG"] if debug else [])
        + ([] if sys.platform == "win32" else ["-std=c++11"]),
        extra_link_args=strip,
    )
    return cythonize(
        [ext],
        compiler_directives={
            "language_level": 3,
            "embedsignature": True,
            "boundscheck": False,
            "wraparound": False,
        },
    )


def _build_ext_class():
    """build_ext that turns a failed compile into one clear message."""
    from setuptools.command.build_ext import build_ext

    class BuildExt(build_ext):
        def run(self):
            try:
                super().run()
            except Exception as exc:
                raise SystemExit(
                    "papy: compiling the scheduler core papy._sched failed "
                    f"({type(exc).__name__}: {exc}). Install a C++11 compiler and the Python "
                    "headers, or set PAPY_NO_EXTENSIONS=1 for a pure-Python build."
                ) from exc

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:
                raise SystemExit(
                    f"papy: compiling {ext.name} failed ({type(exc).__name__}: {exc}). "
                    "Install a C++11 compiler and the Python headers, or set "
                    "PAPY_NO_EXTENSIONS=1 for a pure-Python build."
                ) from exc

    return BuildExt


setup(ext_modules=_extensions(), cmdclass={"build_ext": _build_ext_class()})
