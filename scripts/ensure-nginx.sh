#!/usr/bin/env bash
# The deploy tests check deploy/nginx.conf with the real `nginx -t` (a private config and pid
# file under pytest's temporary folder; no server is started). Install Debian's nginx when it
# is missing, without starting its service; never fail the build over it: the test then skips
# and says why.
set -uo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  echo "nginx: present"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nginx: installing Debian's package (its service is not started)"
  # Debian starts a newly installed service unless policy-rc.d says no: say no for this install.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends nginx >/dev/null
  status=$?
  [ "$own_policy" = "1" ] && rm -f "$policy"
  if [ "$status" = "0" ]; then echo "nginx: installed"; exit 0; fi
fi
echo "nginx: not installed; the nginx config test will skip (apt-get install -y nginx)" >&2
exit 0
