#!/usr/bin/env bash
# Headless Chromium + chromedriver (Debian packages) and Selenium, for tests/ui/ (the MLflow UI test).
# Idempotent: installs only what is missing. Never downloads a browser build of its own.
set -euo pipefail

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  else
    echo "install-browser: no apt-get; install chromium and chromedriver by hand (tests/ui skips without them, fails under CI=true)" >&2
    exit 1
  fi
fi
python -c "import selenium" 2>/dev/null || python -m pip install --quiet "selenium>=4.15"
/usr/bin/chromium --version 2>/dev/null || true
