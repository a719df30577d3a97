"""Signed, short-lived segment links that nginx checks by itself.

A link names one segment of the mirror store and the CID it must have::

    /media/<factory>/<device>/<YYYY-MM-DD>/<file>.ts?cid=<CID>&expires=<unix>&md5=<token>

nginx validates it with ngx_http_secure_link_module (nginx/camswarm.conf.template)::

    secure_link     $arg_md5,$arg_expires;
    secure_link_md5 "$secure_link_expires$uri$arg_cid <secret>";

so ``token`` is the unpadded base64url of MD5(f"{expires}{path}{cid} {secret}").
nginx serves the file from the store with sendfile, or, when the mirror lacks
it, fetches ``/ipfs/<cid>`` from Kubo: the CID is signed so a link can only
ever fetch what the gateway handed out.

MD5 is what the nginx module computes. The secret comes last (no length
extension), and every signed input is restricted to plain characters.

Pure functions, no I/O; the clock is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from node.announce import FILENAME, NAME
from node.errors import BadCID
from node.ipfs_codec import parse_cid
from node.layout import is_day_name

PREFIX = "/media/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")  # 16 MD5 bytes in unpadded base64url


@dataclass(frozen=True)
class MediaPath:
    factory: str
    device: str
    day: str
    filename: str

    @property
    def path(self) -> str:
        return f"{PREFIX}{self.factory}/{self.device}/{self.day}/{self.filename}"


def parse_media_path(path: str) -> MediaPath:
    """Split ``/media/<factory>/<device>/<YYYY-MM-DD>/<file>.ts``; ValueError naming the bad part.

    Names follow node.announce (they start with a letter or digit and hold no
    "/", "%" or NUL), so an accepted path never leaves the store directory and
    nginx's normalised ``$uri`` equals it byte for byte.
    """
    if not isinstance(path, str) or not path.startswith(PREFIX):
        raise ValueError(f"media path {path!r} must start with {PREFIX}")
    parts = path[len(PREFIX) :].split("/")
    if len(parts) != 4:
        raise ValueError(f"media path {path!r} must be {PREFIX}<factory>/<device>/<YYYY-MM-DD>/<file>.ts")
    factory, device, day, filename = parts
    for label, value in (("factory", factory), ("device", device)):
        if not NAME.fullmatch(value):
            raise ValueError(f"media path {path!r}: bad {label} name {value!r}")
    if not is_day_name(day):
        raise ValueError(f"media path {path!r}: day {day!r} is not a YYYY-MM-DD date")
    if not FILENAME.fullmatch(filename):
        raise ValueError(f"media path {path!r}: bad segment file name {filename!r}")
    return MediaPath(factory, device, day, filename)


def media_path(factory: str, device: str, day: str, filename: str) -> str:
    """The validated link path of one stored segment."""
    path = MediaPath(factory, device, day, filename).path
    parse_media_path(path)
    return path


def new_secret() -> str:
    """A link secret (43 URL-safe characters: safe to embed in nginx.conf)."""
    return secrets.token_urlsafe(32)


def sign(path: str, cid: str, expires: int, secret: str) -> str:
    """The token nginx computes for ``path`` (its ``$uri``), ``cid`` and ``expires``."""
    digest = hashlib.md5(f"{expires}{path}{cid} {secret}".encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class Signer:
    """Signs many links of one camera with one expiry: a replay playlist of a whole day holds
    43,200 of them, so the names, secret and expiry are checked once and each link costs one MD5.

    ``url`` gives exactly what ``signed_url`` gives. Its CID check is the character set nginx
    accepts (``[A-Za-z0-9]{1,128}``) rather than a full decode: the CIDs come from the catalog.
    """

    _CID = re.compile(r"[A-Za-z0-9]{1,128}")

    def __init__(self, factory: str, device: str, *, secret: str, expires: int) -> None:
        for label, value in (("factory", factory), ("device", device)):
            if not isinstance(value, str) or not NAME.fullmatch(value):
                raise ValueError(f"bad {label} name {value!r}")
        _check_expires(expires)
        if not secret:
            raise ValueError("secret must not be empty")
        self._head = f"{PREFIX}{factory}/{device}/"
        self._expires = expires
        self._secret = secret
        self._days: set[str] = set()

    def url(self, day: str, filename: str, cid: str) -> str:
        if day not in self._days:
            if not is_day_name(day):
                raise ValueError(f"day {day!r} is not a YYYY-MM-DD date")
            self._days.add(day)
        if not FILENAME.fullmatch(filename):
            raise ValueError(f"bad segment file name {filename!r}")
        if not self._CID.fullmatch(cid):
            raise ValueError(f"cid {cid!r} is not a CID")
        path = f"{self._head}{day}/{filename}"
        return f"{path}?cid={cid}&expires={self._expires}&md5={sign(path, cid, self._expires, self._secret)}"


def _check_expires(expires: int) -> None:
    if type(expires) is not int or expires <= 0:
        raise ValueError(f"expires must be a positive Unix time in whole seconds, got {expires!r}")


def signed_url(path: str, cid: str, *, secret: str, expires: int) -> str:
    """A link to ``path`` valid until ``expires`` (inclusive, like nginx); ValueError on bad input."""
    parse_media_path(path)
    try:
        parse_cid(cid)
    except BadCID as exc:
        raise ValueError(f"cid: {exc}") from None
    _check_expires(expires)
    if not secret:
        raise ValueError("secret must not be empty")
    query = urlencode({"cid": cid, "expires": expires, "md5": sign(path, cid, expires, secret)})
    return f"{path}?{query}"


def verify(path: str, cid: str, expires: int, token: str, secret: str, now: float) -> bool:
    """What nginx decides for a link at time ``now``: signature matches and not yet expired."""
    try:
        parse_media_path(path)
        parse_cid(cid)
        _check_expires(expires)
    except ValueError:  # BadCID is a ValueError
        return False
    if not secret or not _TOKEN.fullmatch(token):
        return False
    if expires < now:
        return False
    return hmac.compare_digest(sign(path, cid, expires, secret), token)
