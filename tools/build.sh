#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds switchboard out of tree: build/ by default, or the folder given
# as $1 with any further arguments passed to configure
# (e.g. tools/build.sh build-san --enable-sanitizers --enable-werror).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build}
[ $# -gt 0 ] && shift
cd "$top"
[ -x configure ] || ./autogen.sh >/dev/null 2>&1 || ./autogen.sh
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$top/configure" -nt Makefile ]; then
    "$top/configure" --quiet "$@"
fi
make -s -j"$(nproc)"
