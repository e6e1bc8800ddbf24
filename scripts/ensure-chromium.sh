#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's headless Chromium (Playwright's own browser
# download cannot run here). Install it when missing; never fail the build over it: the
# browser tests then skip and say why.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  echo "chromium: present"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: installing Debian's package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    && echo "chromium: installed" && exit 0
fi
echo "chromium: not installed; the browser tests will skip (apt-get install -y chromium)" >&2
exit 0
