#!/usr/bin/env bash
# Starts a local Mosquitto on 127.0.0.1:1883 if nothing listens there (the demo's broker).
set -euo pipefail
if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    exit 0
fi
echo "starting a local mosquitto on 127.0.0.1:1883"
mosquitto -d -p 1883 2>/dev/null || mosquitto -d -c /etc/mosquitto/mosquitto.conf
for _ in $(seq 1 50); do
    if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then exit 0; fi
    sleep 0.1
done
echo "mosquitto did not start on 127.0.0.1:1883" >&2
exit 1
