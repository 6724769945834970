#!/usr/bin/env bash
# Run every check dockext has: set-up (scripts/setup.sh), ruff, mypy (src and bench), the JS tests (tests/js, if
# any) and pytest (the whole suite unless arguments are given; they are passed to pytest). Runs them all, then exits
# non-zero if any failed (pytest's "no tests ran", exit 5, is a failure too).
#
# The whole suite runs as five pytest processes: tests/e2e beside tests/engine (each waits on the engine, Compose
# or Chromium much of the time, so on two cores the pair takes far less than one after the other), then
# tests/engine/test_engine_restart.py, which restarts the engine under everything else, beside tests/unit and
# tests/unit/test_fuzz.py, which need none. Each line is prefixed with its part; each part has its own --basetemp
# and log under $DOCKEXT_TEST_TMP (default /tmp/dockext-tests) and its own summary.
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
# the bench scripts run outside CI: type-checking them is what keeps them working as tests/support changes
check mypy-bench .venv/bin/mypy bench/common.py bench/exec.py bench/proxy.py bench/remote.py bench/stream.py
if [ -d tests/js ]; then check node node --test tests/js; fi

pytest_part() {  # pytest_part NAME ARGS...: one part of the suite, its output in $tmp/NAME.log and here, each line
  # prefixed with [NAME] (followed with tail --pid, not a pipe: a process a test leaves behind holding pytest's
  # output open must not hold this up); returns pytest's exit code
  local name=$1 pid follow rc engine=()
  shift
  # the parts named unit and fuzz get an engine address where nothing answers: a unit test that reaches for it
  # fails at once, rather than by chance while test_engine_restart.py restarts it beside them
  case $name in unit|fuzz) engine=(DOCKER_HOST=unix:///nonexistent/docker.sock) ;; esac
  env "${engine[@]}" .venv/bin/python -m pytest -p no:cacheprovider --basetemp="$tmp/$name" "$@" \
    > "$tmp/$name.log" 2>&1 < /dev/null &
  pid=$!
  tail -n +1 -f --pid="$pid" "$tmp/$name.log" | sed -u "s/^/[$name] /" &
  follow=$!
  wait "$pid"
  rc=$?
  wait "$follow"
  return "$rc"
}

side_by_side() {  # side_by_side NAME "ARGS" NAME "ARGS"...: the parts at once (ARGS split on spaces); fails if any
  # does
  local pids=() names=() said=() rc ok=0 i
  while [ $# -ge 2 ]; do
    # shellcheck disable=SC2086
    pytest_part "$1" $2 & pids+=($!)
    names+=("$1")
    shift 2
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"; rc=$?
    said+=("${names[$i]} exited $rc")
    [ "$rc" -eq 0 ] || ok=1
  done
  echo "=== $(IFS=,; echo "${said[*]}" | sed 's/,/, /g')"
  return "$ok"
}

# Byte-compile dockext's sources once: with PYTHONDONTWRITEBYTECODE set (as on these machines) Python never caches
# them itself, and every dockext process the tests start (each command, each dashboard) compiled every module again
# (about 0.35 s of CPU each on a slow 2-core machine; an installed wheel has its bytecode from pip)
.venv/bin/python -m compileall -q src

if [ $# -gt 0 ]; then
  check pytest .venv/bin/python -m pytest -p no:cacheprovider "$@"
else
  tmp=${DOCKEXT_TEST_TMP:-/tmp/dockext-tests}
  mkdir -p "$tmp"
  restart=tests/engine/test_engine_restart.py  # restarts the engine under every other test
  # moved for balance (each part takes its own conftest.py along): the two parts end within a minute
  offline=tests/engine/test_offline_install.py remote=tests/e2e/test_remote_engine.py
  check "pytest (tests/e2e beside tests/engine)" side_by_side \
    e2e "tests/e2e --ignore=$remote $offline" engine "tests/engine --ignore=$restart --ignore=$offline $remote"
  # the unit tests need no engine: they run while it restarts (pytest_part gives them none at all), on the CPU
  # that the restarts leave idle; the fuzz tests, a third of their time, as a part of their own beside them
  fuzz=tests/unit/test_fuzz.py
  check "pytest ($restart beside tests/unit)" side_by_side \
    alone "$restart" unit "tests/unit --ignore=$fuzz" fuzz "$fuzz"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "test.sh: all checks passed"
