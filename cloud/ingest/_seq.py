"""Per-stream sequence bookkeeping: the highest seq seen and the ranges still missing.

Pure. A shared-subscription group delivers a stream's messages to several workers with no
order between them, so a seq above the highest opens a gap that a late envelope may fill
later; a seq at or below the highest that fills no gap is a rewind (the device renumbered,
e.g. after its outbox was recreated) and is counted, not treated as missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Position", "advance"]


@dataclass(frozen=True, kw_only=True)
class Position:
    last_seq: int
    gaps: tuple[tuple[int, int], ...] = ()
    rewinds: int = 0

    @property
    def missing(self) -> int:
        return sum(last - first + 1 for first, last in self.gaps)


def advance(position: Position, seqs: Iterable[int]) -> Position:
    """The position after the envelopes with `seqs` (new ones only) were stored."""
    last = position.last_seq
    gaps: list[tuple[int, int]] = list(position.gaps)
    rewinds = position.rewinds
    for seq in sorted(set(seqs)):
        if seq > last:
            if seq > last + 1:
                gaps.append((last + 1, seq - 1))
            last = seq
            continue
        index = _containing(gaps, seq)
        if index is None:
            if seq > 0:
                rewinds += 1
            continue
        first, end = gaps.pop(index)
        pieces = [(first, seq - 1)] if first <= seq - 1 else []
        if seq + 1 <= end:
            pieces.append((seq + 1, end))
        gaps[index:index] = pieces
    return Position(last_seq=last, gaps=tuple(gaps), rewinds=rewinds)


def _containing(gaps: Sequence[tuple[int, int]], seq: int) -> int | None:
    for index, (first, last) in enumerate(gaps):
        if first <= seq <= last:
            return index
    return None
