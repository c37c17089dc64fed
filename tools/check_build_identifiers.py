#!/usr/bin/env python3
"""Check that cibuildwheel selects exactly papy's intended wheels.

Runs ``cibuildwheel --print-build-identifiers --platform P`` for Linux, macOS
and Windows with the ``[tool.cibuildwheel]`` configuration of pyproject.toml,
and compares each list with the intended matrix: CPython 3.10-3.14 (no PyPy,
no free-threaded ``cp3XXt`` builds) on manylinux and musllinux x86_64 and
aarch64, macOS x86_64 and arm64, and Windows AMD64.

Prints what it checked; exits 1 on any difference, and 0 with a SKIP line if
cibuildwheel is not installed (``pip install cibuildwheel``).

Usage: python tools/check_build_identifiers.py [PROJECT_DIR]
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

PYTHONS = ["cp310", "cp311", "cp312", "cp313", "cp314"]
PLATFORMS = {
    "linux": [
        f"{libc}_{arch}" for libc in ("manylinux", "musllinux") for arch in ("x86_64", "aarch64")
    ],
    "macos": ["macosx_x86_64", "macosx_arm64"],
    "windows": ["win_amd64"],
}
EXPECTED = {
    platform: {f"{py}-{tag}" for py in PYTHONS for tag in tags}
    for platform, tags in PLATFORMS.items()
}


def cibuildwheel_command() -> list[str] | None:
    if importlib.util.find_spec("cibuildwheel") is not None:
        return [sys.executable, "-m", "cibuildwheel"]
    exe = shutil.which("cibuildwheel")
    return [exe] if exe else None


def main(argv: list[str]) -> int:
    project = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent)
    command = cibuildwheel_command()
    if command is None:
        print(
            "check_build_identifiers: SKIP: cibuildwheel is not installed (pip install cibuildwheel)"
        )
        return 0
    version = subprocess.run(
        [command[0], "-c", "from importlib.metadata import version; print(version('cibuildwheel'))"]
        if command[0] == sys.executable
        else [*command, "--help"],  # a cibuildwheel from PATH: its version is not needed
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    version = f"cibuildwheel {version}" if version and "\n" not in version else "cibuildwheel"
    # Only pyproject.toml counts: CIBW_* variables of this shell must not change the answer.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    print(f"check_build_identifiers: {version}, {project / 'pyproject.toml'}")
    ok = True
    for platform, expected in EXPECTED.items():
        proc = subprocess.run(
            [
                *command,
                "--print-build-identifiers",
                "--platform",
                platform,
                "--config-file",
                str(project / "pyproject.toml"),
                str(project),
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        got = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        problems = []
        if proc.returncode != 0:
            problems.append(f"exit status {proc.returncode}: {proc.stderr.strip()[-500:]}")
        if len(got) != len(set(got)):
            problems.append("duplicate identifiers")
        missing, unexpected = sorted(expected - set(got)), sorted(set(got) - expected)
        if missing:
            problems.append("missing: " + " ".join(missing))
        if unexpected:
            problems.append("unexpected: " + " ".join(unexpected))
        odd = [i for i in got if i.startswith(("pp", "gp")) or i.split("-")[0].endswith("t")]
        if odd:
            problems.append("PyPy/GraalPy/free-threaded: " + " ".join(odd))
        print(
            f"  {platform}: {len(got)} identifiers, expected {len(expected)}: "
            + ("OK" if not problems else "MISMATCH")
        )
        for ident in sorted(got):
            print(f"    {ident}")
        for problem in problems:
            print(f"    ERROR: {problem}")
        ok = ok and not problems
    total = sum(len(e) for e in EXPECTED.values())
    print(
        f"check_build_identifiers: {'OK' if ok else 'FAILED'} "
        f"({total} wheels: CPython 3.10-3.14 x manylinux/musllinux x86_64/aarch64, "
        "macOS x86_64/arm64, Windows AMD64)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
