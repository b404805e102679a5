#!/usr/bin/env bash
# Opens the customer display's kiosk page full-screen in Chromium (Pi desktop autostart, e.g.
# ~/.config/labwc/autostart: `/opt/shopedge/deploy/kiosk.sh &`). Waits for the agent to serve it.
#   deploy/kiosk.sh [URL]      default http://127.0.0.1:8738/ (the [display] listen default)
#   SHOPEDGE_KIOSK_BROWSER     browser to run (default: chromium, else chromium-browser)
set -euo pipefail
url="${1:-http://127.0.0.1:8738/}"
if [[ ! "$url" =~ ^http://([^/:]+):([0-9]+)/ ]]; then
    echo "kiosk.sh: URL must look like http://HOST:PORT/, got $url" >&2
    exit 2
fi
host="${BASH_REMATCH[1]}"
port="${BASH_REMATCH[2]}"
browser="${SHOPEDGE_KIOSK_BROWSER:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$browser" ]; then
    echo "kiosk.sh: chromium is not installed (sudo apt-get install chromium)" >&2
    exit 1
fi
waited=0
until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
    if [ "$waited" -ge "${SHOPEDGE_KIOSK_WAIT_S:-120}" ]; then
        echo "kiosk.sh: nothing serves $url after ${waited}s; is shopedge running with driver = \"web\"?" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
exec "$browser" --kiosk --noerrdialogs --disable-infobars --disable-session-crashed-bubble \
    --no-first-run --disable-translate --disable-features=Translate --disable-pinch \
    --overscroll-history-navigation=0 --check-for-update-interval=31536000 \
    --user-data-dir="${XDG_RUNTIME_DIR:-/tmp}/shopedge-kiosk" "$url"
