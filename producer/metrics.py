"""The producer's Prometheus metrics, on a registry of its own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ProducerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.recorded = Counter(
            "camswarm_segments_recorded",
            "Segments journaled (complete on local disk)",
            ["camera"],
            registry=r,
        )
        self.announced = Counter(
            "camswarm_segments_announced", "Segments through every step, announced", ["camera"], registry=r
        )
        self.restarts = Counter("camswarm_ffmpeg_restarts", "ffmpeg runs that ended", ["camera"], registry=r)
        self.camera_up = Gauge(
            "camswarm_camera_up", "1 while the camera delivers segments, else 0", ["camera"], registry=r
        )
        self.outbox_depth = Gauge(
            "camswarm_outbox_depth", "Journaled segments not yet announced", ["camera"], registry=r
        )
        self.outbox_oldest = Gauge(
            "camswarm_outbox_oldest_age_seconds", "Age of the oldest segment not yet announced", registry=r
        )
        self.step_seconds = Histogram(
            "camswarm_step_seconds",
            "Duration of successful outbox steps",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.step_failures = Counter(
            "camswarm_step_failures", "Failed outbox step attempts (retried)", ["step"], registry=r
        )
        self.announce_latency = Histogram(
            "camswarm_closed_to_announced_seconds",
            "From ffmpeg listing a segment to its announcement being published",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.disk_free = Gauge("camswarm_disk_free_bytes", "Free bytes where the state dir lives", registry=r)
        self.disk_low = Gauge("camswarm_disk_low", "1 while free space is below disk_min_free_mb", registry=r)
        self.local_deleted = Counter(
            "camswarm_local_files_deleted", "Local segment files removed after announcement", registry=r
        )
