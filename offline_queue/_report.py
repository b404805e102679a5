"""Pure rendering of outbox inspection data for `shopedge queue`: tables and JSON-ready dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from offline_queue._model import DeadLetter, StreamStats

__all__ = [
    "dead_letters_json",
    "dead_letters_table",
    "format_age",
    "render_table",
    "stats_json",
    "stats_table",
]


def format_age(seconds: float | None) -> str:
    """'-', '42s', '3m05s', '2h07m', '3d04h': short enough for a terminal column."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: set[int] | None = None
) -> str:
    """A plain-text table; columns listed in `right` (numbers) are right-aligned."""
    right = right or set()
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def stats_table(stats: Sequence[StreamStats], now: float) -> str:
    if not stats:
        return "outbox is empty: no records and no dead letters"
    rows = [
        [
            s.stream,
            str(s.depth),
            str(s.in_flight),
            str(s.waiting_retry),
            format_age(None if s.oldest_at is None else now - s.oldest_at),
            str(s.dead),
            str(s.nbytes),
        ]
        for s in stats
    ]
    total = [
        "(all)",
        str(sum(s.depth for s in stats)),
        str(sum(s.in_flight for s in stats)),
        str(sum(s.waiting_retry for s in stats)),
        format_age(max((now - s.oldest_at for s in stats if s.oldest_at is not None), default=None)),
        str(sum(s.dead for s in stats)),
        str(sum(s.nbytes for s in stats)),
    ]
    headers = ["stream", "depth", "in flight", "retrying", "oldest", "dead", "bytes"]
    return render_table(headers, [*rows, total], right={1, 2, 3, 4, 5, 6})


def stats_json(stats: Sequence[StreamStats], now: float) -> list[dict[str, Any]]:
    return [
        {
            "stream": s.stream,
            "depth": s.depth,
            "in_flight": s.in_flight,
            "waiting_retry": s.waiting_retry,
            "oldest_at": s.oldest_at,
            "oldest_age_s": None if s.oldest_at is None else round(now - s.oldest_at, 3),
            "dead": s.dead,
            "bytes": s.nbytes,
        }
        for s in stats
    ]


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def dead_letters_table(letters: Sequence[DeadLetter], now: float) -> str:
    if not letters:
        return "no dead letters"
    rows = [
        [str(d.id), d.stream, str(d.attempts), format_age(now - d.failed_at) + " ago", _clip(d.reason, 70)]
        for d in letters
    ]
    return render_table(["id", "stream", "attempts", "failed", "reason"], rows, right={0, 2})


def dead_letters_json(letters: Sequence[DeadLetter]) -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "stream": d.stream,
            "durability": d.durability.value,
            "dedupe_key": d.dedupe_key,
            "attempts": d.attempts,
            "created_at": d.created_at,
            "failed_at": d.failed_at,
            "reason": d.reason,
            "payload": d.payload,
        }
        for d in letters
    ]
