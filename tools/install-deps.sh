#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian 12 packages switchboard needs, and nothing when they
# are all there already. "build" is what building and running need; "test"
# adds what the test suite drives (cmocka, python3, aiosmtpd for a real
# SMTP peer, openssl, valgrind, clang-format, clang for the fuzz targets,
# man-db, groff-base and mandoc to render and lint the man pages).
# Must run as root (or with sudo available) on a machine that lacks any.
set -eu

profile=${1:-build}
build_pkgs="build-essential autoconf automake libtool pkg-config
libmicrohttpd-dev libyaml-dev libcjson-dev libcurl4-openssl-dev
libsqlite3-dev libgnutls28-dev tzdata"
test_pkgs="libcmocka-dev python3 python3-aiosmtpd python3-prometheus-client openssl curl valgrind
util-linux clang-format clang man-db groff-base mandoc"

case "$profile" in
build) wanted=$build_pkgs ;;
test) wanted="$build_pkgs $test_pkgs" ;;
*) echo "usage: $0 [build|test]" >&2; exit 1 ;;
esac

missing=""
for pkg in $wanted; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
    *" installed") ;;
    *) missing="$missing $pkg" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
# shellcheck disable=SC2086 # the list is meant to split
$sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
