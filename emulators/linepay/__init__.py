"""LINE Pay emulator: verifies signatures and nonces, keeps a ledger, answers LINE's codes, injects faults."""

from emulators.linepay._app import EmulatorServer, ThreadedEmulator, create_emulator_app
from emulators.linepay._state import Charge, Fault, LedgerError, LinePayState, OneTimeKey, Reservation

__all__ = [
    "Charge",
    "EmulatorServer",
    "Fault",
    "LedgerError",
    "LinePayState",
    "OneTimeKey",
    "Reservation",
    "ThreadedEmulator",
    "create_emulator_app",
]
