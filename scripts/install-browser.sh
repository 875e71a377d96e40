#!/usr/bin/env bash
# Install a browser for the browser tests (pytest -m browser) from Debian's packages, unless one is already there.
#   bash scripts/install-browser.sh            # chromium (the default)
#   bash scripts/install-browser.sh firefox    # firefox-esr
# Prints the browser's path on success. Exits non-zero with the reason on stderr when it cannot be installed
# (no apt-get, not root and no password-less sudo, no package mirror reachable); the tests then skip with it.
# PKDOT_CHROMIUM / PKDOT_FIREFOX name a browser binary to use instead.
set -euo pipefail

browser="${1:-chromium}"
case "$browser" in
  chromium) package=chromium; candidates=("${PKDOT_CHROMIUM:-}" chromium chromium-browser google-chrome-stable) ;;
  firefox) package=firefox-esr; candidates=("${PKDOT_FIREFOX:-}" firefox-esr firefox) ;;
  *) echo "usage: $0 [chromium|firefox]" >&2; exit 2 ;;
esac

found() {
  for b in "${candidates[@]}"; do
    if [ -n "$b" ] && command -v "$b" >/dev/null 2>&1; then
      command -v "$b"
      return 0
    fi
  done
  return 1
}

if found; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$browser is not installed and there is no apt-get to install it (set PKDOT_${browser^^} to a binary)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "$browser is not installed, and installing it needs root (run: apt-get install -y $package)" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
install() { $sudo apt-get install -y --no-install-recommends "$package" fonts-dejavu-core >&2; }
echo "==> installing Debian's $package (apt-get)" >&2
if ! install && ! { $sudo apt-get update >&2 && install; }; then  # a fresh machine has no package lists yet
  echo "apt-get could not install $package (no package mirror reachable?)" >&2
  exit 1
fi
found || { echo "$package was installed but no $browser binary is on PATH" >&2; exit 1; }
