#!/usr/bin/env bash
# valgrind memcheck over a small part of the test suite (the alternative to tools/sanitize.sh;
# needs no special build, but runs ~50x slower, so the default selection is small).
#
#   tools/valgrind.sh [pytest args...]     default: tests/_helpers/valgrind_smoke.py
#
# Run it from a checkout where the extension is built in place (or installed).  PYTHONMALLOC=
# malloc sends CPython's small objects through malloc so memcheck sees them; only errors in
# memory use count (--leak-check=no: CPython keeps allocations until exit by design).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
export PYTHONMALLOC=malloc
export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ $# -eq 0 ]; then
    set -- "$SRC/tests/_helpers/valgrind_smoke.py"
else
    set -- -m pytest -p no:cacheprovider "$@"
fi
exec valgrind --tool=memcheck --error-exitcode=99 --leak-check=no --track-origins=yes \
    --suppressions="$SRC/tools/valgrind-python.supp" \
    --num-callers=30 "$PY" "$@"
