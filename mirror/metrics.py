"""The mirror's Prometheus metrics, on a registry of its own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mirror.admission import REASONS

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class MirrorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lag = Histogram(
            "camswarm_mirror_announce_to_playable_seconds",
            "From an announcement's arrival to its segment being listed in the live playlist",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.age = Histogram(
            "camswarm_mirror_segment_age_at_playable_seconds",
            "From a segment's end (recording time) to it being playable here, live and repaired",
            ["via"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.stored = Counter(
            "camswarm_mirror_segments_stored", "Segments written to the store", ["camera", "via"], registry=r
        )
        self.stored_bytes = Gauge("camswarm_mirror_store_bytes", "Bytes of segments in the store", registry=r)
        self.gaps_found = Counter(
            "camswarm_mirror_gaps_found",
            "Missing segments found (catalog scan, seq hole or overflow)",
            registry=r,
        )
        self.gaps_repaired = Counter(
            "camswarm_mirror_gaps_repaired", "Missing segments fetched through catch-up", registry=r
        )
        self.rejects = Counter(
            "camswarm_mirror_rejected_messages", "Announcements refused, by reason", ["reason"], registry=r
        )
        for reason in REASONS:
            self.rejects.labels(reason)
        self.queue_depth = Gauge(
            "camswarm_mirror_queue_depth", "Segments waiting to be fetched", ["queue"], registry=r
        )
        self.overflows = Counter(
            "camswarm_mirror_queue_overflows",
            "Announcements left to catch-up because the queue was full",
            registry=r,
        )
        self.fetch_failures = Counter(
            "camswarm_mirror_fetch_failures", "Failed fetches (left to catch-up)", ["reason"], registry=r
        )
        self.retention_deleted = Counter(
            "camswarm_mirror_days_deleted", "Camera-days removed by retention", registry=r
        )
        self.subscribed = Gauge(
            "camswarm_mirror_subscribed", "1 while the pubsub subscription is open", registry=r
        )
