"""What a mirror accepts from the announcement topic: a pure check, no I/O.

Every pubsub payload goes through :meth:`Admission.admit`, which either returns a verified
:class:`~node.announce.Announcement` or raises :class:`Rejected` naming the first
check that failed. Checks run in this order:

1. ``too_large``, ``bad_json``, ``schema``, ``version``, ``unknown_producer``,
   ``bad_signature``: the wire checks of :func:`node.announce.decode`, reused as is.
2. ``bad_filename``: the file name must match :data:`node.announce.FILENAME` and hold
   neither ``/`` nor ``..`` (decode enforces the pattern already; this is defence in
   depth, since the name ends up in an MFS path).
3. ``bad_time``: the segment must start at most ``max_future_s`` after ``now`` and at
   most ``max_age_s`` before it, and last more than 0 and at most ``max_duration_s``.
4. ``unwanted``: the camera is not one this mirror keeps. Not an error (see
   :attr:`Rejected.benign`), only counted. It comes before the store look-ups so
   cameras the mirror does not keep cost no store query.
5. ``replay``: the camera's ``seq`` is already stored, or lies more than
   ``max_seq_ahead`` above / ``max_seq_behind`` below the highest stored ``seq``.

The store is only consulted through the callables passed in; they may do I/O
behind the caller's back, but this module does none. Exceptions raised by those
callables propagate unchanged; for any ``bytes`` payload, ``admit`` raises nothing but
:class:`Rejected`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from node import announce
from node.announce import Announcement, AnnouncementError

# Every reason admit can raise, in the order the checks run.
DECODE_REASONS = ("too_large", "bad_json", "schema", "version", "unknown_producer", "bad_signature")
REASONS = (*DECODE_REASONS, "bad_filename", "bad_time", "unwanted", "replay")
# Reasons that are normal operation rather than a sign of a broken or hostile producer.
BENIGN = frozenset({"unwanted"})

# (factory, device, seq) -> is this segment already in the mirror's store?
Stored = Callable[[str, str, int], bool]
# (factory, device) -> the highest stored seq of that camera, None when nothing is stored.
Highest = Callable[[str, str], int | None]
# (factory, device) -> does this mirror keep that camera?
Wants = Callable[[str, str], bool]


class Rejected(Exception):
    """A payload the mirror will not store; ``reason`` is one of :data:`REASONS`.

    ``announcement`` is the verified announcement when the rejection came after the
    signature check (``bad_filename`` and later), otherwise None.
    """

    def __init__(self, reason: str, detail: str, announcement: Announcement | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.announcement = announcement

    @property
    def benign(self) -> bool:
        """True when the payload was fine but not for this mirror (count it, do not log it as an error)."""
        return self.reason in BENIGN


@dataclass(frozen=True)
class Limits:
    """Thresholds of the mirror-specific checks."""

    max_seq_ahead: int = 100_000
    max_seq_behind: int = 50_000
    max_future_s: float = 300.0
    max_age_s: float = 40 * 86_400.0
    max_duration_s: float = announce.MAX_SEGMENT_SECONDS

    def __post_init__(self) -> None:
        for name in ("max_seq_ahead", "max_seq_behind", "max_future_s", "max_age_s", "max_duration_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Admission:
    """The checks of one mirror, bound to its allow-list, its store and its limits.

    ``trusted`` maps allow-listed producer key ids to their public keys.
    """

    trusted: Mapping[str, Ed25519PublicKey]
    stored: Stored
    highest: Highest
    wants: Wants
    limits: Limits = DEFAULT_LIMITS

    def admit(self, data: bytes, now: datetime) -> Announcement:
        """Decode, verify and vet one pubsub payload; raise :class:`Rejected` on the first failed check.

        ``now`` must be timezone-aware.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        try:
            announcement = announce.decode(data, dict(self.trusted))
        except AnnouncementError as exc:
            raise Rejected(exc.reason, exc.detail) from None
        return self.check(announcement, now)

    def check(self, announcement: Announcement, now: datetime) -> Announcement:
        """The mirror-specific checks on an already verified announcement; returns it unchanged."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        _check_filename(announcement)
        _check_time(announcement, now, self.limits)
        if not self.wants(announcement.factory, announcement.device):
            raise Rejected("unwanted", f"{_camera(announcement)} is not mirrored here", announcement)
        _check_replay(announcement, self.stored, self.highest, self.limits)
        return announcement


def _camera(announcement: Announcement) -> str:
    return f"{announcement.factory}/{announcement.device}"


def _check_filename(announcement: Announcement) -> None:
    name = announcement.filename
    if announce.FILENAME.fullmatch(name) is None or "/" in name or ".." in name:
        raise Rejected("bad_filename", f"{name!r} is not a plain segment file name", announcement)


def _check_time(announcement: Announcement, now: datetime, limits: Limits) -> None:
    try:
        start = announcement.start_time
    except ValueError:
        raise Rejected("bad_time", f"start {announcement.start!r} is unreadable", announcement) from None
    # A difference of two valid datetimes always fits in a timedelta; now ± limit might not.
    ahead = (start - now).total_seconds()
    if ahead > limits.max_future_s:
        raise Rejected("bad_time", f"start {announcement.start} is {ahead:.0f} s in the future", announcement)
    if -ahead > limits.max_age_s:
        raise Rejected("bad_time", f"start {announcement.start} is {-ahead:.0f} s old", announcement)
    duration = announcement.duration
    if not 0 < duration <= limits.max_duration_s:
        raise Rejected("bad_time", f"duration {duration} s is out of range", announcement)


def _check_replay(announcement: Announcement, stored: Stored, highest: Highest, limits: Limits) -> None:
    factory, device, seq = announcement.factory, announcement.device, announcement.seq
    if stored(factory, device, seq):
        raise Rejected("replay", f"seq {seq} of {factory}/{device} is already stored", announcement)
    top = highest(factory, device)
    if top is None:
        return
    if seq > top + limits.max_seq_ahead:
        raise Rejected(
            "replay", f"seq {seq} of {factory}/{device} is {seq - top} above the highest stored", announcement
        )
    if seq < top - limits.max_seq_behind:
        raise Rejected(
            "replay", f"seq {seq} of {factory}/{device} is {top - seq} below the highest stored", announcement
        )


class RejectCounter(Mapping[str, int]):
    """Rejections per reason, for metrics. Reads like a dict; every reason of :data:`REASONS` is present.

    Not thread-safe; meant for the mirror's single event loop.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = dict.fromkeys(REASONS, 0)

    def add(self, reason: str, count: int = 1) -> None:
        """Count a rejection. An unexpected reason is counted too rather than lost."""
        if count < 0:
            raise ValueError("count must not be negative")
        self._counts[reason] = self._counts.get(reason, 0) + count

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts, safe to hand to a metrics exporter."""
        return dict(self._counts)

    def total(self, *, include_benign: bool = True) -> int:
        return sum(n for reason, n in self._counts.items() if include_benign or reason not in BENIGN)

    def __getitem__(self, reason: str) -> int:
        return self._counts[reason]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)
