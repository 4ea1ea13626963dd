#!/bin/sh
# SPDX-License-Identifier: MIT
# The first quick-start command: install what is missing, build, and run
# switchboard in the foreground on ./switchboard.yaml (127.0.0.1:8080,
# spool in ./var/). Ctrl-C stops it; what was stored stays stored.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/tools/install-deps.sh" build
sh "$top/tools/build.sh" build
cd "$top"
exec ./build/core/switchboard serve -c switchboard.yaml
