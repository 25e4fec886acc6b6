#!/usr/bin/env bash
# Make sure the Docker tools the project uses are installed, from Debian's packages (apt), as
# scripts/ensure_browser.sh does for chromium:
#
#   scripts/ensure_docker.sh compose          # docker-compose (tests/deploy renders compose files)
#   scripts/ensure_docker.sh engine compose debootstrap   # all that scripts/container_smoke.sh needs
#
# engine: the docker client and dockerd (docker.io); compose: `docker compose` or Debian's
# docker-compose; debootstrap: for the local base image when no registry is reachable.
# Idempotent: installs only what is missing. Not root (and no passwordless sudo): says what to
# install and exits 0, so a caller decides whether to go on without it.
set -euo pipefail

missing=()
for tool in "$@"; do
  case "$tool" in
    engine)
      command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 \
        || missing+=(docker.io) ;;
    compose)
      { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; } \
        || missing+=(docker-compose) ;;
    debootstrap)
      command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap) ;;
    *) echo "ensure_docker: unknown tool $tool (engine, compose, debootstrap)" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -gt 0 ] || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_docker: missing ${missing[*]} and apt-get is not available; install them" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure_docker: missing ${missing[*]}; installing needs root:" \
         "run 'sudo apt-get install -y ${missing[*]}'" >&2
    exit 0
  fi
fi
echo "ensure_docker: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
