#!/usr/bin/env bash
# Make a local Python 3.11 base image from Debian bookworm's own packages, for machines that can
# reach Debian's archive and PyPI but no container registry (so `python:3.11-slim-bookworm`
# cannot be pulled). The Dockerfiles take it with `--build-arg PYTHON_IMAGE=<tag>`.
#
#   deploy/docker/make_local_base.sh [TAG]        # default scene-local/python:3.11-bookworm
#
# Environment: MIRROR (default: deb.debian.org), CA_BUNDLE (a CA file copied into this LOCAL
# base only, for a network whose TLS is intercepted; never into the project's images),
# DOCKER (the client command). Needs root (debootstrap) and a running engine.
set -euo pipefail
TAG=${1:-scene-local/python:3.11-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-}
DOCKER=${DOCKER:-docker}

[ "$(id -u)" = 0 ] || { echo "make_local_base: debootstrap needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "make_local_base: apt-get install debootstrap" >&2; exit 2; }

root=$(mktemp -d /var/tmp/scene-base.XXXXXX)
# mktemp makes it 0700; as the image's / that would lock every non-root user out.
chmod 755 "$root"
trap 'rm -rf --one-file-system "$root"' EXIT
# minbase: dpkg, apt and the required set (passwd's useradd included); then only Python 3.11.
debootstrap --variant=minbase --include=python3.11,python3-venv,ca-certificates \
  bookworm "$root" "$MIRROR" >/dev/null
# `python3` for the Dockerfiles (python3-venv pulls it in); apt's cache and lists are dead weight.
chroot "$root" python3 --version
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
env_changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
             --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]')
if [ -n "$CA_BUNDLE" ]; then
  # pip trusts its own certifi bundle unless told: PIP_CERT points it at this one.
  cp "$CA_BUNDLE" "$root/usr/local/share/scene-ca-bundle.crt"
  env_changes+=(--change 'ENV PIP_CERT=/usr/local/share/scene-ca-bundle.crt')
fi
tar -C "$root" --one-file-system -c . | "$DOCKER" import "${env_changes[@]}" - "$TAG" >/dev/null
echo "local base image: $TAG ($("$DOCKER" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
