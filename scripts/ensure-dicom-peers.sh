#!/usr/bin/env bash
# The DICOM tests drive real peers: dcmtk's storescu/echoscu as the modality and Orthanc as the
# PACS (each test starts its own Orthanc with a private configuration on a free port). Install
# Debian's packages when missing, and keep the package's own Orthanc service stopped. Never
# fail the build over it: the DICOM tests then skip and say why.
set -uo pipefail
missing=()
command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
if [ ${#missing[@]} -eq 0 ]; then
  echo "dicom peers: present"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "dicom peers: installing Debian's ${missing[*]}"
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
    # The tests start their own Orthanc; the system service is not wanted.
    (service orthanc stop; update-rc.d orthanc disable; systemctl disable --now orthanc) >/dev/null 2>&1
    echo "dicom peers: installed"
    exit 0
  fi
fi
echo "dicom peers: ${missing[*]} not installed; the DICOM tests will skip (apt-get install -y ${missing[*]})" >&2
exit 0
