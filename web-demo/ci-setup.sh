#!/usr/bin/env bash
# What the browser tests need, installed only when missing: Debian's Chromium (never a browser
# downloaded by a test tool) and playwright-core from package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "please install Debian's chromium (apt-get install chromium)" >&2; exit 1
  fi
fi
if [ ! -d node_modules/playwright-core ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent
fi
