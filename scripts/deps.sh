#!/bin/sh
# Installs the Debian packages kpipe needs to build and test, if any are missing:
# with apt-get when root, with sudo otherwise, else lists them and fails.
PKGS="gcc make pkg-config libyaml-dev libcsv-dev libopenblas-dev libpng-dev
libcurl4-openssl-dev libjansson-dev libxxhash-dev libcmocka-dev zlib1g-dev libarchive-dev libssl-dev
libmicrohttpd-dev python3
dataset-fashion-mnist"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "kpipe: installing missing Debian packages:$missing"
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "kpipe: not root and no sudo; please install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || { echo "kpipe: apt-get update failed; please install:$missing" >&2; exit 1; }
$SUDO apt-get install -y -qq $missing >/dev/null || { echo "kpipe: apt-get install failed; please install:$missing" >&2; exit 1; }
