#!/usr/bin/env bash
# Build a copy of this checkout with AddressSanitizer + UndefinedBehaviorSanitizer
# (FASTGATES_SANITIZE=1, see setup.py) and run the test suite against it.
#
#   tools/sanitize.sh [pytest args...]        default: the whole default suite (pytest -q)
#
# Environment: PYTHON (default python3; needs numpy, scipy, Cython, threadpoolctl, pytest,
# hypothesis), CC (default gcc), SANITIZE_DIR (build directory; default a new /tmp dir).
# The build copies the checkout's tracked files (with uncommitted edits); the source tree
# is not touched.  CPython itself is not instrumented, so the ASan runtime is preloaded;
# leak detection is off because CPython never frees some of its own allocations, and any
# ASan or UBSan report aborts the process (the tests then fail or the run stops).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
CC=${CC:-gcc}
WORK=${SANITIZE_DIR:-$(mktemp -d /tmp/fastgates-sanitize.XXXXXX)}

mkdir -p "$WORK"
(cd "$SRC" && git ls-files -z | xargs -0 cp -p --parents -t "$WORK")
cd "$WORK"
echo "sanitize: building in $WORK"
CC=$CC FASTGATES_SANITIZE=1 "$PY" setup.py build_ext --inplace -q >build.log 2>&1 || {
    tail -30 build.log; exit 1; }

ASAN_RT=$("$CC" -print-file-name=libasan.so)
[ -e "$ASAN_RT" ] || { echo "sanitize: $CC has no libasan.so ($ASAN_RT)"; exit 1; }
# libstdc++ too: ASan must find the real __cxa_throw when C++ extensions (matplotlib) throw
STDCXX=$("$CC" -print-file-name=libstdc++.so)
export LD_PRELOAD="$ASAN_RT:$STDCXX${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
export PYTHONPATH="$WORK"
echo "sanitize: LD_PRELOAD=$LD_PRELOAD"
echo "sanitize: ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS"
"$PY" -c "import fastgates, sys; assert fastgates.__file__.startswith('$WORK'), fastgates.__file__"
exec "$PY" -m pytest -p no:cacheprovider "${@:--q}"
