#!/usr/bin/env bash
# Installs or updates ShopEdge on Raspberry Pi OS (Debian bookworm) from this checkout.
# Idempotent: run it again to update; it keeps the config and the state DB (backed up, then
# migrated in place) and only creates what is missing.
#
#   sudo deploy/install-pi.sh              agent + kiosk display
#   sudo deploy/install-pi.sh --no-kiosk   agent only (display on another screen)
#   sudo deploy/install-pi.sh --relay      also install the cloud relay unit (not enabled)
#
# SHOPEDGE_ROOT=/some/dir installs under that directory instead of / (used by the tests, with
# stub apt-get/systemctl/useradd on PATH).
set -euo pipefail

kiosk=1
relay=0
for arg in "$@"; do
    case "$arg" in
        --no-kiosk) kiosk=0 ;;
        --relay) relay=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install-pi.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

ROOT="${SHOPEDGE_ROOT:-}"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/opt/shopedge"
VENV="$PREFIX/.venv"
CONF="$ROOT/etc/shopedge"
STATE="$ROOT/var/lib/shopedge"
UNITS="$ROOT/etc/systemd/system"
PYTHON="${PYTHON:-python3}"
USER_NAME=shopedge
KIOSK_USER=shopedge-kiosk

say() { echo "install-pi: $*"; }

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install-pi.sh: run as root (sudo)" >&2
    exit 1
fi

# 1. Debian packages, only the missing ones.
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
packages=(bluez python3-venv fonts-noto-cjk sqlite3 ca-certificates)
if [ "$kiosk" -eq 1 ]; then
    packages+=(cage)
    # Raspberry Pi OS ships Chromium as chromium-browser in older images, chromium in newer ones.
    if apt-cache show chromium >/dev/null 2>&1; then packages+=(chromium); else packages+=(chromium-browser); fi
fi
missing=()
for pkg in "${packages[@]}"; do have_pkg "$pkg" || missing+=("$pkg"); done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2. Users and groups. A static user (not DynamicUser): BlueZ's D-Bus policy allows group bluetooth.
getent group bluetooth >/dev/null || groupadd --system bluetooth
if ! getent passwd "$USER_NAME" >/dev/null; then
    say "creating user $USER_NAME"
    useradd --system --user-group --home-dir /var/lib/shopedge --no-create-home \
        --shell /usr/sbin/nologin --groups bluetooth "$USER_NAME"
elif ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx bluetooth; then
    usermod -a -G bluetooth "$USER_NAME"
fi
if [ "$kiosk" -eq 1 ] && ! getent passwd "$KIOSK_USER" >/dev/null; then
    say "creating user $KIOSK_USER"
    # The display needs the GPU (video, render) and input devices; only groups this image has.
    groups=()
    for g in video render input; do getent group "$g" >/dev/null && groups+=("$g"); done
    group_args=()
    if [ "${#groups[@]}" -gt 0 ]; then group_args=(--groups "$(IFS=,; echo "${groups[*]}")"); fi
    useradd --system --user-group --create-home --home-dir "/var/lib/$KIOSK_USER" \
        --shell /usr/sbin/nologin "${group_args[@]}" "$KIOSK_USER"
fi

# 3. Stop the agent while its code and schema change (the outbox keeps everything on disk).
was_active=0
if systemctl is-active --quiet shopedge.service; then
    was_active=1
    say "stopping shopedge for the update"
    systemctl stop shopedge.service
fi

# 4. The virtualenv with this checkout installed (not editable: the checkout may go away).
mkdir -p "$PREFIX"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ "$relay" -eq 1 ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade "${SRC}[relay]"  # line-bot-sdk parses webhooks
else
    "$VENV/bin/python" -m pip install --quiet --upgrade "$SRC"  # the device needs no line-bot-sdk
fi
mkdir -p "$ROOT/usr/local/bin"
ln -sfn /opt/shopedge/.venv/bin/shopedge "$ROOT/usr/local/bin/shopedge"

# 5. Directories with the modes the units expect (systemd also creates them at start).
mkdir -p "$CONF" "$STATE"
chmod 0750 "$CONF" "$STATE"
chown "root:$USER_NAME" "$CONF"
chown "$USER_NAME:$USER_NAME" "$STATE"

# 6. Keep the DB: back it up, then migrate it in place as the service user.
db="$STATE/shopedge.db"
if [ -f "$db" ]; then
    backup="$STATE/backups/shopedge-$(date -u +%Y%m%dT%H%M%SZ).db"
    mkdir -p "$STATE/backups"
    chmod 0750 "$STATE/backups"
    chown "$USER_NAME:$USER_NAME" "$STATE/backups"
    say "backing up $db to $backup"
    "$VENV/bin/python" - "$db" "$backup" <<'PY'
import sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
with dst:
    src.backup(dst)
src.close(); dst.close()
PY
    chown "$USER_NAME:$USER_NAME" "$backup"
    # Keep the five newest backups.
    find "$STATE/backups" -name 'shopedge-*.db' -printf '%T@ %p\n' | sort -rn | tail -n +6 | cut -d' ' -f2- \
        | xargs -r rm -f --
    say "migrating $db"
    runuser -u "$USER_NAME" -- "$VENV/bin/python" -c \
        'import sys; from pathlib import Path; from agent.db import migrate, open_engine; e = open_engine(Path(sys.argv[1])); migrate(e); e.dispose()' \
        "$db"
fi

# 7. Units.
mkdir -p "$UNITS"
install -m 0644 "$SRC/systemd/shopedge.service" "$UNITS/shopedge.service"
if [ "$kiosk" -eq 1 ]; then
    browser="$(command -v chromium || command -v chromium-browser || echo /usr/bin/chromium)"
    sed "s#/usr/bin/chromium #$browser #" "$SRC/systemd/shopedge-kiosk.service" > "$UNITS/shopedge-kiosk.service"
    chmod 0644 "$UNITS/shopedge-kiosk.service"
fi
if [ "$relay" -eq 1 ]; then
    install -m 0644 "$SRC/systemd/shopedge-relay.service" "$UNITS/shopedge-relay.service"
fi
systemctl daemon-reload
systemctl enable --quiet shopedge.service
if [ "$kiosk" -eq 1 ]; then systemctl enable --quiet shopedge-kiosk.service; fi

# 8. Start (or restart) once configured; otherwise say how to configure.
if [ -f "$CONF/config.toml" ]; then
    if [ "$was_active" -eq 1 ]; then say "starting shopedge again"; else say "starting shopedge"; fi
    systemctl start shopedge.service
    if [ "$kiosk" -eq 1 ]; then systemctl restart shopedge-kiosk.service; fi
    say "done. Check with: shopedge doctor --config /etc/shopedge/config.toml"
else
    say "installed. Next: sudo shopedge provision  (then: sudo systemctl start shopedge)"
fi
