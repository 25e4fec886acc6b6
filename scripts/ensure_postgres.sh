#!/usr/bin/env bash
# Make sure Debian's PostgreSQL server is installed for the scale-out tests: the tests start
# their own throwaway cluster (initdb and pg_ctl from /usr/lib/postgresql/*/bin, in a temporary
# directory, as the postgres user when run as root: scene_dev.postgres), so only the package is
# needed, not a running service. Idempotent: exits at once when present.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_postgres: PostgreSQL is missing and apt-get is not available;" \
         "install the PostgreSQL server yourself, or the scale-out tests fail" >&2
    exit 1
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure_postgres: PostgreSQL is missing and installing it needs root;" \
             "run 'sudo apt-get install -y postgresql'" >&2
        exit 1
    fi
fi

echo "ensure_postgres: installing Debian's postgresql (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The package starts a cluster of its own as a service; the tests do not use it.
if command -v pg_lsclusters >/dev/null 2>&1 && command -v service >/dev/null 2>&1; then
    $SUDO service postgresql stop >/dev/null 2>&1 || true
fi
ls /usr/lib/postgresql/*/bin/initdb
