#!/usr/bin/env bash
# The first layer of every PKDOT image, on any Debian or Ubuntu base (python:3.11-slim-bookworm, an NVIDIA CUDA
# Ubuntu 22.04 image, or a bare Debian made with debootstrap):
#   1. extra CA certificates from $EXTRA_CA_CERTS (PEM text; for networks behind a TLS-intercepting proxy),
#      installed before anything is downloaded;
#   2. the libraries OpenCV and MediaPipe load at run time (libGL, GLib);
#   3. Python 3.11 with venv from apt, only where the base has no python3.11 (the official Python images have one);
#   4. a non-root user with uid $APP_UID (default 1000), unless the base already has a user with that uid.
# Run by the Dockerfiles as `bash docker/install-base.sh`; nothing here is specific to one image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
APP_UID="${APP_UID:-1000}"
CA_DIR=/usr/local/share/ca-certificates

install_extra_ca_certs() {
  [ -n "${EXTRA_CA_CERTS:-}" ] || return 0
  mkdir -p "$CA_DIR"
  # %b turns literal "\n" into newlines, so a one-line value from an .env file works too; one certificate per file,
  # because update-ca-certificates names each file's link after the first certificate in it
  printf '%b\n' "$EXTRA_CA_CERTS" | awk -v dir="$CA_DIR" '
    /-----BEGIN CERTIFICATE-----/ { n++ }
    n { print > (dir "/pkdot-extra-" n ".crt") }
    END { if (!n) { print "EXTRA_CA_CERTS holds no PEM certificate" > "/dev/stderr"; exit 1 } }'
  echo "install-base: added $(ls "$CA_DIR"/pkdot-extra-*.crt | wc -l) extra CA certificate(s)"
  if command -v update-ca-certificates >/dev/null; then update-ca-certificates >/dev/null; fi
}

install_packages() {
  local packages=(ca-certificates libgl1 libglib2.0-0)
  if ! command -v python3.11 >/dev/null; then
    packages+=(python3.11 python3.11-venv)
  fi
  apt-get update
  apt-get install -y --no-install-recommends "${packages[@]}"
  update-ca-certificates >/dev/null  # the bundle now includes the extra certificates, also where apt installed it
  apt-get clean
  rm -rf /var/lib/apt/lists/*
}

add_user() {
  if ! getent passwd "$APP_UID" >/dev/null; then
    useradd --uid "$APP_UID" --user-group --create-home --shell /usr/sbin/nologin pkdot
  fi
}

install_extra_ca_certs
install_packages
add_user
version="$(python3.11 -c 'import sys; print(sys.version.split()[0])')"
echo "install-base: Python $version"
case "$version" in
  *a* | *b* | *rc*) echo "install-base: WARNING: Python $version is a pre-release (the base's apt package)" >&2 ;;
esac
