"""Where a segment lives in the network: its published file name and its MFS path.

Shared by producers (which link segments there) and mirrors (which rebuild the
same tree), so both derive names the same way. The day directory is the UTC
date of the segment's start.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

MFS_ROOT = "/camswarm"


def published_name(seq: int, start: datetime) -> str:
    """``HHMMSS-<seq>.ts``: sorts by time within a day, unique per camera by seq."""
    return f"{start.astimezone(UTC):%H%M%S}-{seq:010d}.ts"


def day_name(start: datetime) -> str:
    """``YYYY-MM-DD``, the UTC day of ``start``: how stores and links name a day."""
    return f"{start.astimezone(UTC):%Y-%m-%d}"


def is_day_name(text: str) -> bool:
    """Whether ``text`` is exactly a real date as :func:`day_name` writes it."""
    try:
        return date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def day_dir(factory: str, device: str, start: datetime) -> str:
    return f"{MFS_ROOT}/{factory}/{device}/{start.astimezone(UTC):%Y/%m/%d}"


def mfs_path(factory: str, device: str, start: datetime, filename: str) -> str:
    return f"{day_dir(factory, device, start)}/{filename}"
