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


setup(ext_modules=_extensions())
