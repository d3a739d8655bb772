"""Prometheus metrics: counts and ages read at scrape time, counters fed by the events.

Every label has a bounded set of values (states and queue names, never a jid).
The counters count the namespace's events as this process's event hub read them,
whoever wrote them (the API, Python clients, workers); each server process counts
them all, so scrape one process per deployment or take the max.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..client import AsyncTracker
from ..records import Event

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Gauge(
            "tracker_jobs",
            "Live jobs by state and queue.",
            ["state", "queue"],
            registry=self.registry,
        )
        self.oldest_enqueued = Gauge(
            "tracker_oldest_enqueued_age_seconds",
            "Age of the oldest enqueued job, per queue.",
            ["queue"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "tracker_transitions",
            "Lifecycle transitions, by the state left (new for a registration) and entered.",
            ["from_state", "to_state"],
            registry=self.registry,
        )
        self.track_sets = Counter(
            "tracker_track_set", "TRACK SET calls that changed a track.", registry=self.registry
        )
        self.release_latency = Histogram(
            "tracker_release_latency_seconds",
            "From a job becoming releasable (its last prerequisite succeeded, or its delay "
            "ran out) to its release to its queue.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60),
            registry=self.registry,
        )

    def observe(self, event: Event) -> None:
        """Count one event of the stream."""
        if not event.change:
            self.track_sets.inc()
            return
        to_state = event.state.value
        from_state = event.was.value if event.was else "new"
        if from_state != to_state:
            self.transitions.labels(from_state, to_state).inc()
        if event.release_ms is not None:
            self.release_latency.observe(event.release_ms / 1000)

    async def render(self, tracker: AsyncTracker) -> bytes:
        """The text exposition, with the gauges read from Redis now."""
        # both reads leave in one pipeline (AsyncTracker pipelines concurrent calls)
        stats, ages = await asyncio.gather(tracker.stats(), tracker.enqueued_ages())
        self.jobs.clear()
        for queue, counts in stats.queues.items():
            for state, count in counts.items():
                self.jobs.labels(state, queue).set(count)
        self.oldest_enqueued.clear()
        for queue, ms in ages.items():
            self.oldest_enqueued.labels(queue).set(ms / 1000)
        return generate_latest(self.registry)
