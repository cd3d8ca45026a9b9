"""Prometheus metrics of a Journeys process (``GET /metrics``)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

EVENTS = Counter("journeys_events_accepted_total", "Events accepted by the API", ["outcome"])
ENROLLED = Counter("journeys_enrollments_started_total", "Enrollments admitted", ["journey"])
EXITED = Counter("journeys_enrollments_exited_total", "Enrollments ended", ["journey", "reason"])
SENDS = Counter("journeys_sends_total", "Send attempts by outcome", ["channel", "status", "reason"])
WECOM_ERRORS = Counter("journeys_wecom_errors_total", "Non-zero WeCom errcodes", ["errcode"])
ACTIVITY_SECONDS = Histogram(
    "journeys_activity_seconds", "Activity run time", ["activity", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


class _TimedActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:  # noqa: A002 - the SDK's name
        name = activity.info().activity_type
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await super().execute_activity(input)
            outcome = "ok"
            return result
        finally:
            ACTIVITY_SECONDS.labels(name, outcome).observe(time.perf_counter() - started)


class MetricsInterceptor(Interceptor):
    """Times every activity a worker runs."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:  # noqa: A002
        """Wrap the activity inbound chain."""
        return _TimedActivity(next)
