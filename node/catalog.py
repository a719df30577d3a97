"""The catalog: MongoDB-protocol storage of what exists (FerretDB locally, a replica set in production).

Collections:
- ``segments``: one document per recorded segment, unique on
  (factory, device, seq), indexed on (factory, device, start).
- ``cameras``: each camera's latest state, keyed by ``_id = "factory/device"``.
- ``keys``: segment content keys, wrapped by the master key (see
  :mod:`node.segcrypt`), keyed by ``_id = "factory/device/key_id"``.
- ``sessions``: gateway login sessions, keyed by the sha256 of the cookie value
  (shared by every gateway behind one nginx).
- ``anchors``: one record per camera and closed period (node/anchors.py): the
  period's root, its segments and, once ``camswarm anchor`` sent it, its transaction.
- ``chain_anchors``: the contract's events as ``camswarm anchor index`` copied them,
  keyed like ``anchors``, with ``anchor_index`` holding the next block to read.

Every write is an upsert that never overwrites what was first recorded, so a
retried step cannot duplicate or alter a segment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from node.errors import DaemonError
from node.resources import AsyncResource

SEGMENT_KEY = ("factory", "device", "seq")


def segment_id(factory: str, device: str, seq: int) -> str:
    """A segment document's _id: unique per camera and seq, sorting in seq order."""
    return f"{factory}/{device}/{seq:012d}"


class CatalogUnavailable(DaemonError):
    """The catalog could not be reached or refused the operation."""


class Catalog(AsyncResource):
    def __init__(self, url: str, database: str = "camswarm", *, timeout: float = 5.0) -> None:
        self.url = url
        ms = int(timeout * 1000)
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms, tz_aware=True
        )
        self._db = self._client[database]
        self.segments = self._db["segments"]
        self.cameras = self._db["cameras"]
        self.sessions = self._db["sessions"]
        self.anchors = self._db["anchors"]
        self.chain_anchors = self._db["chain_anchors"]
        self.anchor_index = self._db["anchor_index"]
        self.keys = self._db["keys"]

    async def close(self) -> None:
        await self._client.close()

    def _fail(self, what: str, exc: PyMongoError) -> CatalogUnavailable:
        # The connection string may carry credentials: report only the operation and the error.
        kind = "unreachable" if isinstance(exc, ConnectionFailure) else "error"
        return CatalogUnavailable("catalog", "mongodb", f"{what}: {kind}: {exc}")

    async def ensure_indexes(self) -> None:
        try:
            await self.segments.create_index(
                [(k, ASCENDING) for k in SEGMENT_KEY], unique=True, name="camera_seq_unique"
            )
            await self.segments.create_index(
                [("factory", ASCENDING), ("device", ASCENDING), ("start", ASCENDING)], name="camera_start"
            )
        except PyMongoError as exc:
            raise self._fail("create indexes", exc) from exc

    async def upsert_segment(self, doc: Mapping[str, Any]) -> bool:
        """Record a segment once; returns True if this call inserted it."""
        missing = [k for k in SEGMENT_KEY if k not in doc]
        if missing:
            raise ValueError(f"segment document lacks {missing}")
        # Keyed by a derived _id: an _id lookup is cheap on every MongoDB-protocol server
        # (FerretDB's SQLite backend scans the collection for any other filter).
        key = segment_id(doc["factory"], doc["device"], doc["seq"])
        return await self._insert_once(self.segments, key, doc, "upsert segment")

    async def _insert_once(self, collection: Any, key: str, doc: Mapping[str, Any], what: str) -> bool:
        """Write ``doc`` under ``_id = key`` unless it exists (never overwritten); True if inserted."""
        fields = {k: v for k, v in doc.items() if k != "_id"}
        try:
            result = await collection.update_one({"_id": key}, {"$setOnInsert": fields}, upsert=True)
        except OperationFailure as exc:
            if exc.code == 11000:  # a concurrent insert of the same key won: it is recorded
                return False
            raise self._fail(what, exc) from exc
        except PyMongoError as exc:
            raise self._fail(what, exc) from exc
        return bool(result.upserted_id is not None)

    async def upsert_key(self, doc: Mapping[str, Any]) -> bool:
        """Record a wrapped content key once (``doc["_id"]`` is factory/device/key_id); True if inserted."""
        return await self._insert_once(self.keys, doc["_id"], doc, "upsert key")

    async def get_key(self, factory: str, device: str, key_id: str) -> dict[str, Any] | None:
        try:
            return await self.keys.find_one({"_id": f"{factory}/{device}/{key_id}"})
        except PyMongoError as exc:
            raise self._fail("read key", exc) from exc

    async def _find_segments(
        self, query: Mapping[str, Any], order: str, limit: int = 0
    ) -> list[dict[str, Any]]:
        try:
            cursor = self.segments.find(query, {"_id": 0}).sort(order, ASCENDING).limit(limit)
            return [doc async for doc in cursor]
        except PyMongoError as exc:
            raise self._fail("query segments", exc) from exc

    async def segments_by_seq(self, factory: str, device: str, first: int, last: int) -> list[dict[str, Any]]:
        """Segments of a camera with ``first <= seq <= last``, in seq order."""
        seq = {"$gte": first, "$lte": last}
        return await self._find_segments({"factory": factory, "device": device, "seq": seq}, "seq")

    async def segments_after(self, factory: str, device: str, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` segments of a camera with ``seq > after``, in seq order (paging by seq)."""
        query = {"factory": factory, "device": device, "seq": {"$gt": after}}
        return await self._find_segments(query, "seq", limit)

    async def first_segment_since(self, factory: str, device: str, since: datetime) -> dict[str, Any] | None:
        """The camera's lowest-seq segment starting at or after ``since``."""
        query = {"factory": factory, "device": device, "start": {"$gte": since}}
        found = await self._find_segments(query, "seq", 1)
        return found[0] if found else None

    async def segments_between(
        self, factory: str, device: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Segments of a camera that start in ``[start, end)``, in time order."""
        window = {"$gte": start, "$lt": end}
        return await self._find_segments({"factory": factory, "device": device, "start": window}, "start")

    async def set_camera_state(self, factory: str, device: str, fields: Mapping[str, Any]) -> None:
        try:
            await self.cameras.update_one(
                {"_id": f"{factory}/{device}"},
                {"$set": {"factory": factory, "device": device, **fields}},
                upsert=True,
            )
        except PyMongoError as exc:
            raise self._fail("update camera", exc) from exc

    async def list_cameras(self) -> list[dict[str, Any]]:
        """Every camera's latest state, ordered by ``factory/device``."""
        try:
            return [doc async for doc in self.cameras.find({}).sort("_id", ASCENDING)]
        except PyMongoError as exc:
            raise self._fail("list cameras", exc) from exc

    async def camera_state(self, factory: str, device: str) -> dict[str, Any] | None:
        try:
            return await self.cameras.find_one({"_id": f"{factory}/{device}"})
        except PyMongoError as exc:
            raise self._fail("read camera", exc) from exc

    async def put_session(self, key: str, fields: Mapping[str, Any]) -> None:
        try:
            await self.sessions.replace_one({"_id": key}, dict(fields), upsert=True)
        except PyMongoError as exc:
            raise self._fail("write session", exc) from exc

    async def get_session(self, key: str) -> dict[str, Any] | None:
        try:
            return await self.sessions.find_one({"_id": key})
        except PyMongoError as exc:
            raise self._fail("read session", exc) from exc

    async def delete_session(self, key: str) -> None:
        try:
            await self.sessions.delete_one({"_id": key})
        except PyMongoError as exc:
            raise self._fail("delete session", exc) from exc

    async def delete_sessions_before(self, moment: datetime) -> int:
        try:
            result = await self.sessions.delete_many({"expires": {"$lt": moment}})
        except PyMongoError as exc:
            raise self._fail("expire sessions", exc) from exc
        return int(result.deleted_count)

    # --- anchors ------------------------------------------------------------------------

    async def first_segment(self, factory: str, device: str) -> dict[str, Any] | None:
        """The camera's lowest-seq segment still in the catalog."""
        found = await self._find_segments({"factory": factory, "device": device}, "seq", 1)
        return found[0] if found else None

    async def put_anchor(self, record: Mapping[str, Any]) -> bool:
        """Record a closed period once (never overwritten); True if this call inserted it."""
        return await self._insert_once(self.anchors, record["_id"], record, "record anchor")

    async def _find(
        self, collection: Any, query: Mapping[str, Any], what: str, limit: int = 0
    ) -> list[dict[str, Any]]:
        try:
            cursor = collection.find(query).sort("_id", ASCENDING).limit(limit)
            return [doc async for doc in cursor]
        except PyMongoError as exc:
            raise self._fail(what, exc) from exc

    async def latest_anchor(self, factory: str, device: str) -> dict[str, Any] | None:
        try:
            return await self.anchors.find_one(
                {"factory": factory, "device": device}, sort=[("period_start", -1)]
            )
        except PyMongoError as exc:
            raise self._fail("read anchors", exc) from exc

    async def anchors_between(
        self, factory: str, device: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Anchor records of the periods overlapping ``[start, end)``, in time order."""
        query = {
            "factory": factory,
            "device": device,
            "period_start": {"$lt": end},
            "period_end": {"$gt": start},
        }
        return await self._find(self.anchors, query, "read anchors")

    async def unsent_anchors(self, limit: int) -> list[dict[str, Any]]:
        """Records no transaction has been confirmed for yet, oldest first."""
        return await self._find(self.anchors, {"chain": None}, "read anchors", limit)

    async def set_anchor_chain(self, anchor_id: str, chain: Mapping[str, Any]) -> None:
        try:
            await self.anchors.update_one({"_id": anchor_id}, {"$set": {"chain": dict(chain)}})
        except PyMongoError as exc:
            raise self._fail("update anchor", exc) from exc

    async def put_chain_anchor(self, anchor_id: str, fields: Mapping[str, Any]) -> None:
        try:
            await self.chain_anchors.replace_one({"_id": anchor_id}, dict(fields), upsert=True)
        except PyMongoError as exc:
            raise self._fail("index chain anchor", exc) from exc

    async def chain_anchors_between(
        self, factory: str, device: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        query = {"factory": factory, "device": device, "period_start": {"$gte": start, "$lt": end}}
        return await self._find(self.chain_anchors, query, "read chain anchors")

    async def index_cursor(self, contract: str) -> int | None:
        try:
            doc = await self.anchor_index.find_one({"_id": contract.lower()})
        except PyMongoError as exc:
            raise self._fail("read anchor index", exc) from exc
        return None if doc is None else int(doc["next_block"])

    async def set_index_cursor(self, contract: str, next_block: int) -> None:
        try:
            await self.anchor_index.replace_one(
                {"_id": contract.lower()}, {"next_block": next_block}, upsert=True
            )
        except PyMongoError as exc:
            raise self._fail("write anchor index", exc) from exc
