"""Build script: compiles the scheduling core ``papy._sched`` with Cython.

``PAPY_NO_EXTENSIONS=1`` builds a pure-Python package (the twin core is then
selected at run time). Otherwise a missing Cython or a failing compile is an
error: papy never installs the slow path silently.
"""

import os
import sys

from setuptools import setup

NO_EXTENSIONS = bool(os.environ.get("PAPY_NO_EXTENSIONS")) or sys.implementation.name != "cpython"


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
    debug = bool(os.environ.get("PAPY_DEBUG_BUILD"))
    ext = Extension(
        "papy._sched",
        ["src/papy/_sched.pyx"],
        language="c++",
        extra_compile_args=(["-O0", "-g3", "-UNDEBUG"] if debug else [])
        + ([] if sys.platform == "win32" else ["-std=c++11"]),
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
