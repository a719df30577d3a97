"""A set of segment sequence numbers kept as sorted, disjoint runs.

A camera's seqs are nearly contiguous, so a mirror holding months of footage
keeps a handful of runs per camera instead of millions of integers. The gaps
between runs are exactly the holes to repair.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class SeqSet:
    """Sorted disjoint inclusive runs ``[(first, last), ...]``; no two runs touch."""

    def __init__(self, seqs: Iterable[int] = ()) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        for seq in seqs:
            self.add(seq)

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        index = bisect.bisect_right(self._firsts, seq) - 1
        return index >= 0 and seq <= self._lasts[index]

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in zip(self._firsts, self._lasts, strict=True))

    def __iter__(self) -> Iterator[int]:
        for first, last in zip(self._firsts, self._lasts, strict=True):
            yield from range(first, last + 1)

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._firsts, self._lasts, strict=True))

    @property
    def lowest(self) -> int | None:
        return self._firsts[0] if self._firsts else None

    @property
    def highest(self) -> int | None:
        return self._lasts[-1] if self._lasts else None

    def add(self, seq: int) -> bool:
        """Add one seq; returns False when it was already present."""
        index = bisect.bisect_right(self._firsts, seq) - 1
        if index >= 0 and seq <= self._lasts[index]:
            return False
        joins_left = index >= 0 and self._lasts[index] == seq - 1
        right = index + 1
        joins_right = right < len(self._firsts) and self._firsts[right] == seq + 1
        if joins_left and joins_right:
            self._lasts[index] = self._lasts[right]
            del self._firsts[right], self._lasts[right]
        elif joins_left:
            self._lasts[index] = seq
        elif joins_right:
            self._firsts[right] = seq
        else:
            self._firsts.insert(right, seq)
            self._lasts.insert(right, seq)
        return True

    def discard(self, seq: int) -> None:
        """Remove one seq if present, splitting its run."""
        index = bisect.bisect_right(self._firsts, seq) - 1
        if index < 0 or seq > self._lasts[index]:
            return
        first, last = self._firsts[index], self._lasts[index]
        if first == last:
            del self._firsts[index], self._lasts[index]
        elif seq == first:
            self._firsts[index] = seq + 1
        elif seq == last:
            self._lasts[index] = seq - 1
        else:
            self._lasts[index] = seq - 1
            self._firsts.insert(index + 1, seq + 1)
            self._lasts.insert(index + 1, last)

    def discard_below(self, floor: int) -> None:
        """Forget every seq lower than ``floor`` (retention dropped them)."""
        while self._firsts and self._lasts[0] < floor:
            del self._firsts[0], self._lasts[0]
        if self._firsts and self._firsts[0] < floor:
            self._firsts[0] = floor

    def missing(self, first: int, last: int) -> list[tuple[int, int]]:
        """The runs of ``[first, last]`` that are not in the set, in order."""
        holes: list[tuple[int, int]] = []
        cursor = first
        index = max(bisect.bisect_right(self._firsts, first) - 1, 0)
        while cursor <= last and index < len(self._firsts):
            run_first, run_last = self._firsts[index], self._lasts[index]
            if run_last >= cursor:
                if run_first > cursor:
                    holes.append((cursor, min(run_first - 1, last)))
                cursor = run_last + 1
            index += 1
        if cursor <= last:
            holes.append((cursor, last))
        return holes
