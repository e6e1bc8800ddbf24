#!/usr/bin/env bash
# ensure-debian-package.sh COMMAND PACKAGE WHAT
# Some tests drive a Debian program: the dashboard's browser tests Debian's headless chromium
# (Playwright's own browser download cannot run here), the deploy tests `nginx -t` on
# deploy/nginx.conf (a private config; no server is started). Install PACKAGE when COMMAND is
# missing, without starting any service it ships; never fail the build over it: WHAT (the
# tests) then skip and say why.
set -uo pipefail
command_name=$1 package=$2 what=$3
if command -v "$command_name" >/dev/null 2>&1 || [ -x "/usr/bin/$command_name" ] \
    || [ -x "/usr/sbin/$command_name" ]; then
  echo "$package: present"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "$package: installing Debian's package (no service started)"
  # Debian starts a newly installed service unless policy-rc.d says no: say no for this install.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  status=$?
  [ "$own_policy" = "1" ] && rm -f "$policy"
  if [ "$status" = "0" ]; then echo "$package: installed"; exit 0; fi
fi
echo "$package: not installed; $what will skip (apt-get install -y $package)" >&2
exit 0
