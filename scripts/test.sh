#!/usr/bin/env bash
# Run every check dockext has: set-up (scripts/setup.sh), ruff, mypy, the JS tests (tests/js, if any) and
# pytest (the whole suite unless arguments are given; they are passed to pytest). Runs them all, then exits
# non-zero if any failed (pytest's "no tests ran", exit 5, is a failure too).
#
#   bash scripts/test.sh                       # everything, as CI does (.ci/run)
#   bash scripts/test.sh tests/engine -k sockperm -x
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

bash scripts/setup.sh || exit 1

failed=()
check() {  # check NAME COMMAND...
  local name=$1 t0 rc
  shift
  echo "=== $name: $*"
  t0=$(date +%s)
  "$@"
  rc=$?
  echo "=== $name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - t0)) s"
  [ $rc -eq 0 ] || failed+=("$name")
}

check ruff .venv/bin/ruff check src tests bench
check mypy .venv/bin/mypy
if [ -d tests/js ]; then check node node --test tests/js; fi
check pytest .venv/bin/python -m pytest -p no:cacheprovider "$@"

if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "test.sh: all checks passed"
