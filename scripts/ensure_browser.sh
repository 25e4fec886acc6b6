#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the browser test (tests/browser/).
# The test drives /usr/bin/chromium through playwright's Python client; `playwright install`
# downloads its own browser build from a CDN, which is neither reachable nor wanted here, so the
# browser comes from the distribution's package instead. Idempotent: exits at once when present.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_browser: $CHROMIUM is missing and apt-get is not available;" \
         "install chromium yourself, or the browser test will be skipped" >&2
    exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure_browser: $CHROMIUM is missing and installing it needs root;" \
             "run 'sudo apt-get install -y chromium', or the browser test will be skipped" >&2
        exit 0
    fi
fi

echo "ensure_browser: installing Debian's chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-liberation: without any font the page's text renders as empty boxes in screenshots.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
"$CHROMIUM" --version
