#!/usr/bin/env bash
# Install the npm packages the tests run (tests/js/package.json: the Khronos glTF validator,
# three.js, a Gaussian splat renderer) into tests/js/node_modules, exactly as the lock file
# says. Idempotent: exits at once when the installed lock matches. Without node/npm the tests
# that need them skip with a loud reason.
set -euo pipefail
dir=$(cd "$(dirname "$0")/../tests/js" && pwd)

if ! command -v npm >/dev/null 2>&1; then
    echo "ensure_js_test_deps: npm is missing; the glTF validator and splat renderer tests" \
         "will be skipped (apt-get install nodejs npm)" >&2
    exit 0
fi
stamp="$dir/node_modules/.installed-package-lock.json"
if cmp -s "$dir/package-lock.json" "$stamp" 2>/dev/null; then
    exit 0
fi
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
cp "$dir/package-lock.json" "$stamp"
