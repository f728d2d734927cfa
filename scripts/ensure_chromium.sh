#!/usr/bin/env bash
# Browser tests drive Debian's chromium (never a downloaded browser). Install it when it is
# missing and we may; otherwise stop with a clear message instead of failing obscurely later.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-cjk >/dev/null
  exit 0
fi
echo "The browser tests need Debian's chromium at /usr/bin/chromium: run 'sudo apt-get install chromium fonts-noto-cjk'" >&2
echo "(or run 'make test-fast' to skip browser and worker tests)." >&2
exit 1
