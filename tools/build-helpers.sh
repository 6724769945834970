#!/usr/bin/env bash
# Builds the static helper binaries shipped as package data, from src/dockext/helpers/*.c:
#   src/dockext/helpers/sockperm-linux-amd64   musl-gcc -static (Debian musl-tools)
#   src/dockext/helpers/sockperm-linux-arm64   aarch64-linux-gnu-gcc -static (Debian gcc-aarch64-linux-gnu,
#                                              libc6-dev-arm64-cross); skipped, with a message, if not installable
# This script is the only way the committed binaries are made. Run it as root on Debian 12 (x86_64):
#   bash tools/build-helpers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
H=src/dockext/helpers
CFLAGS=(-std=c11 -Os -s -static -Wall -Wextra -Werror -ffile-prefix-map="$PWD"=. -Wl,--build-id=none)

need() {  # need PACKAGE...: apt-get install what is missing; non-zero if it cannot
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/build-helpers-apt.log 2>&1
}

build() {  # build CC OUT
  "$1" "${CFLAGS[@]}" -o "$2.tmp" "$H/sockperm.c"
  mv "$2.tmp" "$2"
  printf 'build-helpers: %s (%s bytes, sha256 %s)\n' "$2" "$(stat -c %s "$2")" "$(sha256sum "$2" | cut -c1-12)"
}

need musl-tools || { tail -n 20 /tmp/build-helpers-apt.log >&2; echo "build-helpers: cannot install musl-tools" >&2; exit 1; }
build musl-gcc "$H/sockperm-linux-amd64"

if need gcc-aarch64-linux-gnu libc6-dev-arm64-cross; then
  build aarch64-linux-gnu-gcc "$H/sockperm-linux-arm64"
else
  tail -n 5 /tmp/build-helpers-apt.log >&2
  echo "build-helpers: gcc-aarch64-linux-gnu/libc6-dev-arm64-cross cannot be installed: arm64 binary NOT built" >&2
fi
