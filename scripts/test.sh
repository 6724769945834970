#!/usr/bin/env bash
# Run every check dockext has: set-up (scripts/setup.sh), ruff, mypy, the JS tests (tests/js, if any) and
# pytest (the whole suite unless arguments are given; they are passed to pytest). Runs them all, then exits
# non-zero if any failed (pytest's "no tests ran", exit 5, is a failure too).
#
# The whole suite runs as three pytest processes: tests/e2e beside tests/unit + tests/engine (each waits on the
# engine, Compose or Chromium about half the time, so on two cores the pair takes little longer than the longer
# one alone), then the tests that restart the engine, alone. Each line of the first two is prefixed with its part;
# each part has its own --basetemp under $DOCKEXT_TEST_TMP (default /tmp/dockext-tests) and its own summary.
# What lets them share one engine: tests/e2e installs its fixtures under its own prefix (tests/e2e/conftest.py),
# every other module names its images its own way, and the one rootful Podman is locked (tests/support/locks.py).
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

pytest_part() {  # pytest_part NAME ARGS...: one part of the suite, its output in $tmp/NAME.log and here, each line
  # prefixed with [NAME] (followed with tail --pid, not a pipe: a process a test leaves behind holding pytest's
  # output open must not hold this up); returns pytest's exit code
  local name=$1 pid follow rc
  shift
  .venv/bin/python -m pytest -p no:cacheprovider --basetemp="$tmp/$name" "$@" > "$tmp/$name.log" 2>&1 < /dev/null &
  pid=$!
  tail -n +1 -f --pid="$pid" "$tmp/$name.log" | sed -u "s/^/[$name] /" &
  follow=$!
  wait "$pid"
  rc=$?
  wait "$follow"
  return "$rc"
}

side_by_side() {  # tests/e2e and the rest at once; fails if either does
  local a b
  # (the unit tests' fuzzing goes with tests/e2e: it evens the two out, about 23 min each on a slow 2-core machine)
  pytest_part e2e tests/e2e "$FUZZ" & a=$!
  pytest_part engine tests/unit tests/engine --ignore="$FUZZ" --ignore="$ALONE" & b=$!
  wait "$a"; local ra=$?
  wait "$b"; local rb=$?
  echo "=== e2e exited $ra, engine exited $rb"
  [ "$ra" -eq 0 ] && [ "$rb" -eq 0 ]
}

if [ $# -gt 0 ]; then
  check pytest .venv/bin/python -m pytest -p no:cacheprovider "$@"
else
  ALONE=tests/engine/test_engine_restart.py  # restarts the engine under every other test
  FUZZ=tests/unit/test_fuzz.py
  tmp=${DOCKEXT_TEST_TMP:-/tmp/dockext-tests}
  mkdir -p "$tmp"
  check "pytest (tests/e2e beside tests/unit and tests/engine)" side_by_side
  check "pytest (alone: $ALONE)" pytest_part alone "$ALONE"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "test.sh: all checks passed"
