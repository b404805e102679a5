"""Hardware drivers (BLE, display, barcode scanner), each behind a small interface with a fake twin."""

__all__: list[str] = []
