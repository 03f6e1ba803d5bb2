"""GET /metrics: Prometheus text exposition (prometheus-client), families prefixed `whisperx_`.
HTTP traffic and refusals are counted in this API process; tasks, queue wait, run and stage
times, real-time factor, webhook outcomes, workers and model loads are read from the database at
scrape time, so every API process reports the whole cluster whichever workers did the work."""

from __future__ import annotations

import bisect
import platform
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select

from app.errors import ERROR_RESPONSES
from app.store.models import Delivery, Task, TaskStatus
from app.store.tasks import ENDED, TaskStore

SECONDS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
"""Buckets of task durations: up to 4 hours."""
RATIOS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)


class Metrics:
    """The registry of one app, its HTTP and refusal counters, and the database collector."""

    def __init__(self, store: TaskStore, version: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("whisperx_http_requests", "HTTP requests by route template and status.",
                                ["method", "route", "status"], registry=self.registry)  # fmt: skip
        self.latency = Histogram("whisperx_http_request_duration_seconds", "HTTP request latency.",
                                 ["method", "route"], registry=self.registry)  # fmt: skip
        self.refusals = Counter("whisperx_refusals", "Requests refused before the route ran.",
                                ["reason"], registry=self.registry)  # fmt: skip
        self.registry.register(_Cluster(store, version))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HttpMetrics:
    """ASGI middleware: counts each request by its route template (never its path: ids stay
    out of labels) and method and status, and times it."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, started = [500], time.perf_counter()

        async def tracked(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = _route(scope)
            labels = (scope["method"], route)
            self.metrics.requests.labels(*labels, str(status[0])).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)


class _Buckets:
    """A histogram's cumulative bucket counts and sum, added to as tasks end."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds, self.counts, self.total = bounds, [0] * (len(bounds) + 1), 0.0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def exposed(self) -> tuple[list[tuple[str, float]], float]:
        running, out = 0, []
        for bound, n in zip([*map(floatToGoString, self.bounds), "+Inf"], self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out, self.total


class _Cluster:
    """What the database knows, collected at each scrape. Ended tasks are folded into the
    histograms once each: a scrape reads only the rows that ended since the last one, with two
    minutes of overlap for late commits and clocks that differ between machines."""

    OVERLAP = timedelta(minutes=2)

    def __init__(self, store: TaskStore, version: str) -> None:
        self.store, self.version = store, version
        self.waits, self.rtf = _Buckets(SECONDS), _Buckets(RATIOS)
        self.runs: dict[str, _Buckets] = {}
        self.stages: dict[str, _Buckets] = {}
        self.seen: dict[str, datetime] = {}  # ended within the overlap: end time by identifier
        self.lock = threading.Lock()

    def _fold(self, s: Any) -> None:
        query = select(
            Task.identifier, Task.task_type, Task.created_at, Task.start_time, Task.end_time,
            Task.duration, Task.audio_duration, Task.info, Task.status,
        ).where(Task.status.in_(ENDED), Task.start_time.is_not(None), Task.end_time.is_not(None))  # fmt: skip
        if self.seen:
            query = query.where(Task.end_time > max(self.seen.values()) - self.OVERLAP)
        for r in s.execute(query):
            if r.identifier in self.seen:
                continue
            self.seen[r.identifier] = r.end_time
            self.waits.add((r.start_time - r.created_at).total_seconds())
            if r.duration is not None:
                self.runs.setdefault(str(r.task_type), _Buckets(SECONDS)).add(r.duration)
            for name, seconds in ((r.info or {}).get("stage_seconds") or {}).items():
                self.stages.setdefault(name, _Buckets(SECONDS)).add(seconds)
            if r.status == TaskStatus.completed and r.duration and r.audio_duration:
                self.rtf.add(r.duration / r.audio_duration)
        if self.seen:
            cut = max(self.seen.values()) - self.OVERLAP
            latest = max(self.seen, key=self.seen.__getitem__)  # kept: the next scrape's mark
            self.seen = {i: t for i, t in self.seen.items() if t > cut or i == latest}

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("whisperx_build", "Service version and platform.")
        info.add_metric([], {"version": self.version, "python": platform.python_version()})
        yield info
        tasks = GaugeMetricFamily("whisperx_tasks", "Tasks by status and type.", labels=["status", "task_type"])  # fmt: skip
        with self.lock, self.store.session() as s:
            counts = s.execute(select(Task.status, Task.task_type, func.count()).group_by(Task.status, Task.task_type))  # fmt: skip
            for status, task_type, n in counts:
                tasks.add_metric([str(status), str(task_type)], n)
            self._fold(s)
            deliveries = Tally(dict(s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()))  # fmt: skip
        yield tasks
        yield _histogram("whisperx_task_queue_wait_seconds", "Seconds from submission to a worker's claim.", self.waits)  # fmt: skip
        run = HistogramMetricFamily("whisperx_task_run_seconds", "Seconds from claim to end, by task type.", labels=["task_type"])  # fmt: skip
        for kind in sorted(self.runs):
            run.add_metric([kind], *self.runs[kind].exposed())
        yield run
        stage = HistogramMetricFamily("whisperx_task_stage_seconds", "Seconds per pipeline stage (vad is part of transcribe).", labels=["stage"])  # fmt: skip
        for name in sorted(self.stages):
            stage.add_metric([name], *self.stages[name].exposed())
        yield stage
        yield _histogram("whisperx_task_real_time_factor", "Processing seconds per second of audio, completed tasks.", self.rtf)  # fmt: skip
        hooks = CounterMetricFamily("whisperx_webhook_deliveries", "Webhook deliveries by outcome.", labels=["outcome"])  # fmt: skip
        for outcome in ("delivered", "failed", "refused", "pending"):
            hooks.add_metric([outcome], deliveries.get(outcome, 0))
        yield hooks
        workers = self.store.workers()
        alive = GaugeMetricFamily("whisperx_workers_alive", "Live workers by state.", labels=["state"])  # fmt: skip
        for state in ("warming", "idle", "busy"):
            alive.add_metric([state], sum(w.state == state for w in workers))
        yield alive
        for event in ("loads", "releases"):
            family = CounterMetricFamily(f"whisperx_model_{event}", f"Model {event} by live workers since they started.")  # fmt: skip
            family.add_metric([], sum((w.stats or {}).get(f"model_{event}", 0) for w in workers))
            yield family


def _histogram(name: str, doc: str, values: _Buckets) -> HistogramMetricFamily:
    buckets, total = values.exposed()
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


router = APIRouter(tags=["Health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}},
        401: ERROR_RESPONSES[401],
        429: ERROR_RESPONSES[429],
    },
)
def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _route(scope: Any) -> str:
    """The path template that matched (FastAPI's routes say it; Starlette's, such as /docs, have
    no parameters; a mount counts as one route), or `unmatched`."""
    route = scope.get("route")
    if route is not None:
        return route.path
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return "unmatched"
    if "app_root_path" in scope:  # a mount: its prefix
        return scope["root_path"][len(scope["app_root_path"]) :] + "/…"
    return scope["path"]
