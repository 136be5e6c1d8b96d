#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium (the browser tests drive it with Playwright,
# tests/browser/). Idempotent and quiet: does nothing when it is there; otherwise installs the `chromium`
# package with apt-get, as root or through sudo, and prints apt's output only if that fails.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo -n)
else
  echo "ensure-chromium: /usr/bin/chromium is missing, and this is not root and there is no sudo" >&2
  exit 1
fi

echo "ensure-chromium: installing Debian's chromium"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# On a fresh machine the package lists may be missing or stale: refresh them, then install.
if ! { "${as_root[@]}" apt-get update -q \
       && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "ensure-chromium: apt-get failed" >&2
  exit 1
fi
[ -x /usr/bin/chromium ] || { echo "ensure-chromium: /usr/bin/chromium still missing after the install" >&2; exit 1; }
