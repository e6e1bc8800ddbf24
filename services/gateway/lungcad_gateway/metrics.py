"""Prometheus metrics: request counts and latency, jobs by state, queue depth."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lungcad.db.models import Job
from lungcad_gateway import broker
from lungcad_gateway.runtime import Runtime

log = logging.getLogger(__name__)


class StateCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("lungcad_jobs", "Jobs by state", labels=["state"])
        try:
            with self.runtime.sessions() as session:
                for state, count in session.execute(
                        select(Job.state, func.count()).group_by(Job.state)):
                    jobs.add_metric([state], count)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on a down database
            log.warning("metrics: jobs by state unavailable: %s", exc)
        yield jobs
        depth = GaugeMetricFamily("lungcad_queue_depth", "Messages waiting per queue",
                                  labels=["queue"])
        try:
            for queue, count in broker.queue_depths(self.runtime.settings).items():
                depth.add_metric([queue], count)
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: queue depth unavailable: %s", exc)
        yield depth


class Metrics:
    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lungcad_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("lungcad_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5,
                                          5, 10, 30))
        self.registry.register(StateCollector(runtime))


class MetricsMiddleware:
    """Pure ASGI middleware: labels by route template, never by raw path (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
