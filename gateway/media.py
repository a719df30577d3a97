"""Pure helpers of the gateway's media endpoints: ranges, timelines, playlist links."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mirror.playlists import TIME_TOLERANCE_S
from node.announce import format_start
from node.merkle import period_root

MAX_PARAM = 64  # longest accepted query value (an ISO 8601 instant or a day)


class BadRequest(ValueError):
    """A request parameter the gateway refuses (HTTP 400); the message names it."""


def parse_instant(name: str, text: str | None) -> datetime:
    """An ISO 8601 instant with a time zone (``Z`` or an offset), as UTC."""
    if text is None or text == "":
        raise BadRequest(f"{name} is required (ISO 8601, e.g. 2026-11-21T08:00:00Z)")
    if len(text) > MAX_PARAM or not re.fullmatch(r"[0-9T:.+\-Z ]+", text):
        raise BadRequest(f"{name} is not an ISO 8601 instant")
    try:
        moment = datetime.fromisoformat(text.replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} is not an ISO 8601 instant") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name} needs a time zone (Z or +HH:MM)")
    return moment.astimezone(UTC)


def parse_range(start: str | None, end: str | None, *, max_seconds: float) -> tuple[datetime, datetime]:
    first, last = parse_instant("start", start), parse_instant("end", end)
    if last <= first:
        raise BadRequest("end must be after start")
    if (last - first).total_seconds() > max_seconds:
        raise BadRequest(f"the range is longer than the maximum of {max_seconds:g} s")
    return first, last


def parse_day(text: str | None, today: date) -> date:
    """``YYYY-MM-DD``; absent means today (UTC)."""
    if text is None or text == "":
        return today
    if len(text) != 10 or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise BadRequest("day must be YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest("day must be a real date (YYYY-MM-DD)") from None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    segments: int

    def to_json(self) -> dict[str, Any]:
        return {"start": format_start(self.start), "end": format_start(self.end), "segments": self.segments}


def timeline(docs: Iterable[Mapping[str, Any]], day: date, now: datetime) -> dict[str, Any]:
    """Recorded spans and the gaps between them within ``day`` (up to ``now`` for today).

    Segments closer than the playlists' time tolerance join one span.
    """
    first, last = day_bounds(day)
    horizon = min(last, max(first, now))
    spans: list[Span] = []
    for doc in sorted(docs, key=lambda d: d["start"]):
        start, end = doc["start"], doc["end"]
        if spans and (start - spans[-1].end).total_seconds() <= TIME_TOLERANCE_S:
            top = spans[-1]
            spans[-1] = Span(top.start, max(top.end, end), top.segments + 1)
        else:
            spans.append(Span(start, end, 1))
    gaps = []
    cursor = first
    for span in spans:
        if span.start > cursor:
            gaps.append({"start": format_start(cursor), "end": format_start(span.start)})
        cursor = max(cursor, span.end)
    if horizon > cursor:
        gaps.append({"start": format_start(cursor), "end": format_start(horizon)})
    return {
        "day": day.isoformat(),
        "spans": [s.to_json() for s in spans],
        "gaps": gaps,
        "recorded_s": round(sum((s.end - s.start).total_seconds() for s in spans), 3),
    }


def overlapping(docs: Iterable[Mapping[str, Any]], start: datetime, end: datetime) -> list[Mapping[str, Any]]:
    """Segments that overlap ``[start, end)``, in seq order."""
    chosen = [d for d in docs if d["start"] < end and d["end"] > start]
    return sorted(chosen, key=lambda d: d["seq"])


# Tags that belong to the media segment after them (RFC 8216 4.3.2); other tags are the playlist's.
_SEGMENT_TAGS = (
    "#EXTINF:",
    "#EXT-X-BYTERANGE:",
    "#EXT-X-KEY:",
    "#EXT-X-MAP:",
    "#EXT-X-PROGRAM-DATE-TIME:",
    "#EXT-X-DATERANGE:",
    "#EXT-X-GAP",
)


def relink(text: str, link: Callable[[str], str | None]) -> str:
    """The playlist with each segment URI replaced by ``link(uri)``.

    A URI it cannot link (not yet indexed) ends the playlist there, with that
    segment's tags: dropping it alone would shift the media sequence numbers of
    the segments after it. Line by line: a day playlist holds up to 43,200
    segments, which m3u8's model takes over a second to parse and write again.
    """
    lines = text.splitlines()
    out: list[str] = []
    segment_begins: int | None = None  # where the tags of the segment being read start in `out`
    for line in lines:
        if line and not line.startswith("#"):
            target = link(line.strip())
            if target is None:
                del out[len(out) if segment_begins is None else segment_begins :]
                if "#EXT-X-ENDLIST" in lines:
                    out.append("#EXT-X-ENDLIST")
                break
            out.append(target)
            segment_begins = None
            continue
        if segment_begins is None and (line == "#EXT-X-DISCONTINUITY" or line.startswith(_SEGMENT_TAGS)):
            segment_begins = len(out)
        out.append(line)
    return "\n".join(out) + "\n"


def anchor_marks(
    records: Iterable[Mapping[str, Any]],
    chain: Mapping[str, Mapping[str, Any]],
    held: Callable[[datetime, datetime], list[str] | None],
) -> list[dict[str, Any]]:
    """Each closed period of a day as the timeline marks it.

    ``records``: the catalog's anchor records; ``chain``: the indexed chain events by
    anchor id; ``held(start, end)``: the CIDs this gateway's store holds for the period
    in seq order (None when it cannot tell). States: ``verified`` (on chain, and the
    store's segments give the anchored root), ``anchored`` (on chain; the store cannot
    confirm it), ``mismatch`` (the chain or the store disagrees with the record),
    ``pending`` (closed, not yet on chain).
    """
    marks = []
    for record in sorted(records, key=lambda r: r["period_start"]):
        event = chain.get(record["_id"])
        sent = record.get("chain") or {}
        mark: dict[str, Any] = {
            "start": format_start(record["period_start"]),
            "end": format_start(record["period_end"]),
            "segments": int(record["count"]),
            "root": record["root"],
            "tx": (event or {}).get("tx_hash") or sent.get("tx_hash"),
        }
        if sent.get("status") == "conflict" or (event is not None and event["root"] != record["root"]):
            mark["state"] = "mismatch"
        elif event is None:
            mark["state"] = "pending"
        else:
            cids = held(record["period_start"], record["period_end"])
            same = cids is not None and period_root(cids).hex() == event["root"]
            mark["state"] = "verified" if same else ("mismatch" if cids else "anchored")
        marks.append(mark)
    return marks
