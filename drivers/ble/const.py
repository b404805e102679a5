"""Every BLE timing and threshold constant, each with the reasoning that derives it.

Owned here so the scanner shell, the recovery ladder and the presence engine agree, and so a
reviewer can check each number against the BlueZ/bleak behaviour it is derived from
(see /work/shared/reference/ble-presence.md section 4).
"""

from __future__ import annotations

from typing import Final

# --- Bluetooth assigned numbers -------------------------------------------------------------

APPLE_COMPANY_ID: Final = 0x004C
"""iBeacon lives in Apple's manufacturer-specific data."""

EDDYSTONE_UUID: Final = "0000feaa-0000-1000-8000-00805f9b34fb"
"""Eddystone service data UUID (16-bit 0xFEAA expanded onto the Bluetooth base UUID)."""

LINE_BEACON_UUID: Final = "0000fe6f-0000-1000-8000-00805f9b34fb"
"""LINE Simple Beacon service data UUID (16-bit 0xFE6F)."""

# --- Scanner watchdog (habluetooth's derivation) --------------------------------------------

BLUEZ_STALE_S: Final = 180.0
"""BlueZ forgets a device it has not heard for 180 s, so silence must be noticed well before."""

WATCHDOG_INTERVAL_S: Final = 30.0
"""How often the watchdog looks at the time of the last advert."""

WATCHDOG_SILENCE_S: Final = BLUEZ_STALE_S - WATCHDOG_INTERVAL_S - 2 * WATCHDOG_INTERVAL_S
"""90 s = 180 - 30 - 2x30: a restart after 90 s of silence completes (start timeout + one
check interval of slack) before BlueZ would have dropped every device."""

START_TIMEOUT_S: Final = 15.0
"""A `start()` that has not returned after 15 s is stuck in D-Bus (habluetooth uses 15 s)."""

STOP_TIMEOUT_S: Final = 5.0
"""Stopping discovery is a single D-Bus call; 5 s means BlueZ itself is wedged."""

DBUS_CALL_TIMEOUT_S: Final = 5.0
"""Timeout for each direct BlueZ D-Bus call of the recovery ladder (StopDiscovery, Powered)."""

POWER_CYCLE_OFF_S: Final = 1.0
"""Time the adapter stays powered off during a power cycle, enough for the controller to reset."""

UNKNOWN_OBJECT_WAIT_S: Final = 1.5
"""After bluetoothd restarts, its objects reappear within about 1.5 s (habluetooth)."""

NO_ADAPTER_RETRY_S: Final = 30.0
"""With no adapter at all, look again every 30 s (a USB dongle may be plugged in later);
faster polling would only burn CPU on a Pi that has no radio."""

RECOVERY_BACKOFF_CAP_S: Final = 60.0
"""Past the ladder, retries back off up to one minute: short enough that a returning adapter
is picked up within one watchdog window of BlueZ's 180 s device timeout."""

ADVERT_QUEUE_SIZE: Final = 4096
"""Bounded queue between the bleak callback and the engine: about 10 s of adverts in a busy
shop (~400/s). When full, the oldest advert is dropped and counted, never the loop blocked."""

# --- Presence engine --------------------------------------------------------------------------

RSSI_WINDOW: Final = 8
"""Samples in the per-beacon RSSI window: 8 adverts is 0.8-8 s at the 100 ms-1 s intervals
beacons use, long enough to ride out a multipath fade, short enough to follow a walk-up."""

RSSI_TRIM: Final = 2
"""Samples trimmed from each end of the sorted window (25 % per side): the trimmed mean is
robust to the deep fades and spikes of indoor RSSI like a median, but moves smoothly."""

TICK_S: Final = 1.0
"""The engine's clock tick: leave/stay/silence deadlines are resolved to within one second."""

FOOTFALL_BUCKET_S: Final = 300
"""Footfall is counted per 5-minute bucket."""

FOOTFALL_DAY_OFFSET_S: Final = 8 * 3600
"""The hash salt rotates at local midnight in Taiwan (UTC+8), the stores' only time zone."""

FOOTFALL_SALT_BYTES: Final = 16
"""128-bit random salt per day, held only in memory: yesterday's hashes cannot be linked to
today's, and a restart starts a fresh salt (a restart at most double-counts one bucket)."""

TELEMETRY_TTL_S: Final = 7 * 24 * 3600.0
"""Presence telemetry still unsent after a week is dropped: the broker keeps a device's session
for a week too (`mqtt.session_expiry_s`), and week-old footfall no longer steers staffing."""

# --- LINE Simple Beacon advertiser ------------------------------------------------------------

ADVERT_INTERVAL_MS: Final = 153
"""LINE "strongly recommends" 152.5 ms (beacon-device-spec). BlueZ takes whole milliseconds
and converts with a truncating ms / 0.625: 153 ms -> 244 units = 152.5 ms exactly."""

MESSAGE_CHECK_S: Final = 1.0
"""How often the advertiser asks for the device message: a rotating code changes at most at a
slot edge (minutes apart), and one second late is a small share of a slot."""

ADVERT_CALL_TIMEOUT_S: Final = 5.0
"""RegisterAdvertisement/UnregisterAdvertisement are single D-Bus calls, like the ladder's."""
