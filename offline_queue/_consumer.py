"""The consumer rule every outbox consumer follows: one record's failure never stops its stream.

`classify(exc, attempts)` is pure: it says whether a record whose handling raised `exc` on its
`attempts`-th try is retried or moved to the dead letters, and why. `settle_failure` applies
that verdict through `Outbox.release`.

- **Transient** (the database is busy, the network or the disk is away, a timeout): retry with
  the outbox's capped backoff, however often; the record is fine, the world is not, and
  dead-lettering it would only lose it.
- **Permanent** (the record itself cannot be handled: a value out of range, a wrong type, a
  missing field), or an exception that says so (`permanent = True` attribute): dead at once.
- **Anything else**: retried, and dead once the same record failed `max_attempts` times,
  because handling that raises every time would otherwise hold the stream's head forever.

An exception may carry `transient = True` or `permanent = True` to say which it is; a
consumer may name more types of its own. Causes are followed (`raise ... from`), so a library
wrapping a `sqlite3.OperationalError` still counts as "database busy".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from offline_queue._model import OutboxWriteError

__all__ = [
    "DEFAULT_REPEATS",
    "Failure",
    "FailureKind",
    "ReleasePort",
    "classify",
    "describe",
    "failure_kind",
    "settle_failure",
]

# A handler that fails the same way this many times in a row is failing on the record, not on
# the world: five tries with the outbox's backoff (1, 2, 4, 8 s) hold the stream ~15 s.
DEFAULT_REPEATS = 5

_TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,  # ConnectionError, a full or read-only disk, a socket that went away
    sqlite3.OperationalError,  # "database is locked", "disk I/O error"
    OutboxWriteError,
)
_PERMANENT: tuple[type[BaseException], ...] = (
    ValueError,  # bad value: UnicodeError, JSONDecodeError, pydantic's ValidationError
    TypeError,
    LookupError,  # a missing key or index
    ArithmeticError,  # OverflowError from an absurd number, ZeroDivisionError
    sqlite3.IntegrityError,
)


class FailureKind(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class Failure:
    """The verdict on one failed delivery: dead-letter it or retry it; `reason` is what the
    outbox records (a dead letter's reason gets the outbox's "permanent error: " in front)."""

    kind: FailureKind
    dead: bool
    reason: str


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or getattr(current, "orig", None)
        if not isinstance(current, BaseException):
            current = None
    return seen


def failure_kind(
    exc: BaseException,
    *,
    transient: Sequence[type[BaseException]] = (),
    permanent: Sequence[type[BaseException]] = (),
) -> FailureKind:
    """Transient, permanent or unknown, from the exception and its causes (outermost first)."""
    for link in _chain(exc):
        if getattr(link, "permanent", False) is True:
            return FailureKind.PERMANENT
        if getattr(link, "transient", False) is True:
            return FailureKind.TRANSIENT
        if isinstance(link, tuple(permanent)):
            return FailureKind.PERMANENT
        if isinstance(link, tuple(transient)):
            return FailureKind.TRANSIENT
        # IntegrityError is a DatabaseError like OperationalError: check permanent first.
        if isinstance(link, _PERMANENT):
            return FailureKind.PERMANENT
        if isinstance(link, _TRANSIENT):
            return FailureKind.TRANSIENT
    return FailureKind.UNKNOWN


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}"[:500] if text else name


def classify(
    exc: BaseException,
    attempts: int,
    *,
    max_attempts: int = DEFAULT_REPEATS,
    transient: Sequence[type[BaseException]] = (),
    permanent: Sequence[type[BaseException]] = (),
) -> Failure:
    """The verdict for a record whose handling raised `exc` on its `attempts`-th try (from 1)."""
    kind = failure_kind(exc, transient=transient, permanent=permanent)
    what = describe(exc)
    if kind is FailureKind.PERMANENT:
        return Failure(kind=kind, dead=True, reason=what)
    if kind is FailureKind.UNKNOWN and attempts >= max_attempts:
        return Failure(kind=kind, dead=True, reason=f"failed the same way {attempts} times: {what}")
    return Failure(kind=kind, dead=False, reason=what)


class ReleasePort(Protocol):
    """The part of `Outbox` that `settle_failure` uses."""

    async def release(
        self,
        record_id: int,
        error: str,
        *,
        retry_at: float | None = None,
        permanent: bool = False,
        transient: bool = False,
    ) -> None: ...


async def settle_failure(
    outbox: ReleasePort,
    record_id: int,
    attempts: int,
    exc: BaseException,
    *,
    max_attempts: int = DEFAULT_REPEATS,
    transient: Sequence[type[BaseException]] = (),
    permanent: Sequence[type[BaseException]] = (),
) -> Failure:
    """Release a claimed record after `exc`: to the dead letters or back for a retry."""
    failure = classify(exc, attempts, max_attempts=max_attempts, transient=transient, permanent=permanent)
    await outbox.release(
        record_id,
        failure.reason,
        permanent=failure.dead,
        transient=failure.kind is FailureKind.TRANSIENT,
    )
    return failure
