#!/usr/bin/env bash
# Installs the Debian packages ShopEdge needs, only those that are missing (idempotent).
#   deploy/system-deps.sh demo   -> runtime: CJK fonts, time zones, a local MQTT broker
#   deploy/system-deps.sh test   -> also what the tests use: NATS, Chromium, systemd-analyze, dbus-daemon, fonts, FUSE 3
set -euo pipefail
profile="${1:-demo}"

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
want_pkg() { have_pkg "$1" || need+=("$1"); }

want_pkg fonts-noto-cjk
want_pkg tzdata  # zoneinfo: coupon budgets and funnel days are counted in Asia/Taipei
have_cmd mosquitto || need+=(mosquitto)
if [ "$profile" = "test" ]; then
    have_cmd nats-server || need+=(nats-server)
    have_cmd chromium || need+=(chromium)
    have_cmd systemd-analyze || need+=(systemd)
    have_cmd mosquitto_passwd || need+=(mosquitto)
    have_cmd openssl || need+=(openssl)             # certificates for the MQTT TLS tests
    have_cmd dbus-daemon || need+=(dbus-daemon)   # private bus for the BlueZ adapter-control tests
    have_cmd shellcheck || need+=(shellcheck)
    have_cmd unshare || need+=(util-linux)
    have_cmd fusermount3 || need+=(fuse3)         # LazyFS power-cut tests (libfuse3 for mfusepy)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)  # the cloud tests' database
fi

if [ "${#need[@]}" -eq 0 ]; then
    exit 0
fi
echo "installing Debian packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
