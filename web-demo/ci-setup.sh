#!/usr/bin/env bash
# What the browser tests (tests/it/web_demo.rs) and the TypeScript client's tests
# (tests/it/ts_client.rs) need, each installed only when missing, so running this again is cheap:
# Debian's Chromium at /usr/bin/chromium (the tests never let Playwright download a browser),
# playwright-core and uPlot exactly as pinned in package-lock.json (uPlot is vendored into
# assets/vendor, which a test keeps equal to the installed copy), and the client package's dev tools.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "web-demo: please install Debian's chromium (apt-get install chromium)" >&2
    exit 1
  fi
  echo "web-demo: installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! command -v npm >/dev/null; then
  echo "web-demo: node and npm are needed (Node.js >= 20)" >&2
  exit 1
fi
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/uplot ]; then
  echo "web-demo: npm ci"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi

# The TypeScript client (web-demo/client): its pinned typescript and ws (devDependencies only).
# Its dist/ is committed (the hub serves it to the demo pages); tests/it/ts_client.rs checks it
# equals a fresh `tsc` build of src/.
if [ ! -d client/node_modules/typescript ] || [ ! -d client/node_modules/ws ]; then
  echo "web-demo/client: npm ci"
  (cd client && npm ci --no-audit --no-fund --loglevel=error)
fi
