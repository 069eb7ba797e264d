"""IMAP sequence sets: `1:4,7,9:*` and the saved result `$` (RFC 9051 §9, RFC 5182).

A client may name "1:*" in a mailbox of a million messages, so a set is kept as the ranges it
was written with and only ever expanded to sorted, merged ranges: never to a list of numbers
unless the caller iterates over them one by one.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_NUMBER = 0xFFFFFFFF  # RFC 9051 §9: nz-number is a 32-bit unsigned value
_SEQ_NUMBER = re.compile(r"\*|[1-9][0-9]{0,9}")


def _parse_seq_number(text: str) -> int | None:
    if not _SEQ_NUMBER.fullmatch(text):
        raise ValueError(f"invalid sequence number {text!r}")
    if text == "*":
        return None
    value = int(text)
    if value > MAX_NUMBER:
        raise ValueError(f"sequence number {text} is larger than {MAX_NUMBER}")
    return value


@dataclass(frozen=True)
class SeqRange:
    """`first:last` as written; None stands for `*` (the largest number in use)."""

    first: int | None
    last: int | None

    def __str__(self) -> str:
        first = "*" if self.first is None else str(self.first)
        if self.first == self.last:
            return first
        return first + ":" + ("*" if self.last is None else str(self.last))

    def bounds(self, max_number: int) -> tuple[int, int]:
        """The range with `*` resolved, low end first (RFC 9051: 4:2 is the same as 2:4)."""
        first = max_number if self.first is None else self.first
        last = max_number if self.last is None else self.last
        return (first, last) if first <= last else (last, first)


@dataclass(frozen=True)
class SequenceSet:
    """A parsed `sequence-set`; `saved` is the `$` of SEARCHRES (RFC 5182), which has no ranges."""

    ranges: tuple[SeqRange, ...] = ()
    saved: bool = False

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Read the wire form; raise ValueError for anything RFC 9051 §9 does not allow."""
        if text == "$":
            return cls(saved=True)
        if not text:
            raise ValueError("empty sequence set")
        ranges = []
        for part in text.split(","):
            first, colon, last = part.partition(":")
            start = _parse_seq_number(first)
            end = _parse_seq_number(last) if colon else start
            ranges.append(SeqRange(start, end))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """The shortest set holding exactly these numbers (for COPYUID, VANISHED, ESEARCH ALL)."""
        ranges: list[SeqRange] = []
        first = last = -1
        for number in sorted(set(numbers)):
            if number < 1:
                raise ValueError(f"{number} is not a valid message number")
            if number == last + 1:
                last = number
                continue
            if first > 0:
                ranges.append(SeqRange(first, last))
            first = last = number
        if first > 0:
            ranges.append(SeqRange(first, last))
        return cls(tuple(ranges))

    @classmethod
    def range(cls, first: int | None, last: int | None) -> SequenceSet:
        """One range; None for `*`."""
        return cls((SeqRange(first, last),))

    @classmethod
    def in_order(cls, numbers: Iterable[int]) -> SequenceSet:
        """These numbers in the given order, each ascending run as one range: ESORT's ALL
        (RFC 5267 §3: the result in sort order), where ``of`` would sort them."""
        ranges: list[SeqRange] = []
        for number in numbers:
            if number < 1:
                raise ValueError(f"{number} is not a valid message number")
            last = ranges[-1] if ranges else None
            if last is not None and last.last is not None and number == last.last + 1:
                ranges[-1] = SeqRange(last.first, number)
            else:
                ranges.append(SeqRange(number, number))
        return cls(tuple(ranges))

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(str(part) for part in self.ranges)

    def __bool__(self) -> bool:
        return self.saved or bool(self.ranges)

    @property
    def uses_star(self) -> bool:
        return any(part.first is None or part.last is None for part in self.ranges)

    def highest_explicit(self) -> int:
        """The largest number written out: a message number beyond EXISTS is BAD (RFC 9051)."""
        written = [n for part in self.ranges for n in (part.first, part.last) if n is not None]
        return max(written, default=0)

    def _require_resolved(self) -> None:
        if self.saved:
            raise ValueError("'$' must be replaced by the saved search result before use")

    def expand(self, max_number: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges within 1..max_number, `*` meaning max_number.

        For UIDs pass the highest UID in use: "UID FETCH 5:*" then still names that message
        when it is below 5, as RFC 9051 §6.4.9 requires.
        """
        self._require_resolved()
        clipped = []
        for part in self.ranges:
            low, high = part.bounds(max_number)
            low, high = max(low, 1), min(high, max_number)
            if low <= high:
                clipped.append((low, high))
        clipped.sort()
        merged: list[tuple[int, int]] = []
        for low, high in clipped:
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return merged

    def contains(self, number: int, max_number: int) -> bool:
        """Whether the set names `number` in a mailbox whose highest number is max_number."""
        self._require_resolved()
        if not 1 <= number <= max_number:
            return False
        for part in self.ranges:
            low, high = part.bounds(max_number)
            if low <= number <= high:
                return True
        return False

    def numbers(self, max_number: int) -> Iterator[int]:
        """Each number once, ascending, produced lazily."""
        for low, high in self.expand(max_number):
            yield from range(low, high + 1)

    def count(self, max_number: int) -> int:
        return sum(high - low + 1 for low, high in self.expand(max_number))

    def filter(self, candidates: list[int], max_number: int) -> list[int]:
        """The members of a sorted list (such as a mailbox's UIDs) that the set names."""
        chosen: list[int] = []
        for low, high in self.expand(max_number):
            start = bisect.bisect_left(candidates, low)
            stop = bisect.bisect_right(candidates, high)
            chosen.extend(candidates[start:stop])
        return chosen
