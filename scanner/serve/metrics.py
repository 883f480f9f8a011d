"""What `reachscan serve` answers: the newest complete stored run as Prometheus metrics.

`GET /metrics` replays the newest complete run through the same `PromSink` the `--format
prom` file comes from (`render_run`, into an in-memory `MemoryTarget`), so the metric
names, labels and values are the textfile's; serve's own metrics are `self_families`.

A responder thread opens the SQLite store itself (sqlite3 objects belong to the thread
that made them) read-only, never blocking a scan that is writing (WAL). Rendering a big
run costs a pass over its rows (tens of seconds for 65,535 endpoints) and its text is
~19 MB, so the rendered run is cached per (database file, run id), a complete run never
changing, and every client is sent that one bytes object (and its gzip, made once when
first asked for), never a copy. The database's mtime is not part of the key because in
WAL mode writes land in `-wal` and the main file changes only at checkpoints; every batch
a scan writes would otherwise empty the cache.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import MappingProxyType

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from scanner.console import report_error
from scanner.history.records import RunRecord, RunStatus
from scanner.history.store import HistoryError, HistoryStore, run_info_of, summary_of
from scanner.outputs.prom import PREFIX, PromSink, run_gauge, run_succeeded
from scanner.serve.http import Request, Response

METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REPLAY_BATCH = 1_000  # results handed to the sink at a time

INDEX_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>reachscan</title></head><body>\n"
    b"<h1>reachscan</h1>\n<p>The newest complete run in the history, as Prometheus metrics: "
    b'<a href="/metrics">/metrics</a></p>\n</body></html>\n'
)
NOT_FOUND_PAGE = b"not found: the metrics are at /metrics\n"


# --- rendering ----------------------------------------------------------------------


class MemoryTarget:
    """An `OutputTarget` that keeps the bytes, so a sink can render an HTTP response."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._committed: bytes | None = None

    def write(self, data: bytes | bytearray) -> None:
        self._chunks.append(bytes(data))

    def flush(self) -> None:
        """Nothing to hand on: the bytes are read with `committed`."""

    def commit(self) -> None:
        self._committed = b"".join(self._chunks)

    def discard(self) -> None:
        self._chunks.clear()
        self._committed = None

    @property
    def committed(self) -> bytes:
        """Everything written before `commit`; RuntimeError if nothing was committed."""
        if self._committed is None:
            raise RuntimeError("MemoryTarget: nothing committed")
        return self._committed


def render_run(store: HistoryStore, run: RunRecord, *, aggregates_only: bool) -> bytes:
    """Run `run` through `PromSink` exactly as the scan fed it: the textfile's metrics.

    No previous file exists here, so the sink emits the last-success time only when this
    run was a success; `self_families` adds it from the history otherwise.
    """
    target = MemoryTarget()
    sink = PromSink(target, aggregates_only=aggregates_only)
    sink.start(run_info_of(run))
    results = store.results(run.id)
    while batch := list(itertools.islice(results, REPLAY_BATCH)):
        sink.write(batch)
    sink.finish(summary_of(run))
    return target.committed


@dataclass(frozen=True, slots=True)
class HistoryState:
    """What one scrape learned about the history, beyond the served run's own metrics."""

    readable: bool
    runs: Mapping[RunStatus, int]
    served: RunRecord | None
    last_success: float | None


NO_RUNS: Mapping[RunStatus, int] = MappingProxyType(dict.fromkeys(RunStatus, 0))


def self_families(state: HistoryState, now: float) -> list[Metric]:
    """serve's own metrics (the module docstring lists them)."""
    families: list[Metric] = [
        _gauge(
            "history_up",
            "1 when reachscan serve could read the history database for this scrape.",
            int(state.readable),
        )
    ]
    if not state.readable:
        return families
    runs = GaugeMetricFamily(
        f"{PREFIX}runs_stored", "Runs stored in reachscan's history, by status.", labels=["status"]
    )
    for status in RunStatus:
        runs.add_metric([status.value], state.runs.get(status, 0))
    families.append(runs)
    served = state.served
    if served is None or served.finished is None:
        return families
    families += [
        _gauge("served_run_id", "The stored run these metrics come from.", served.id),
        _gauge(
            "last_run_age_seconds",
            "Seconds since the run these metrics come from finished.",
            max(0.0, now - served.finished),
        ),
    ]
    if state.last_success is not None and not run_succeeded(summary_of(served)):
        # The served run's own metric, as its textfile would carry it forward.
        families.append(
            run_gauge(
                "last_success_timestamp_seconds",
                "Unix time a reachscan run last found every endpoint as expected.",
                served.vantage,
                state.last_success,
            )
        )
    return families


class _Families:
    """A prometheus_client collector yielding families built beforehand."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def exposition(families: Sequence[Metric]) -> bytes:
    registry = CollectorRegistry()
    registry.register(_Families(families))
    return generate_latest(registry)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", documentation, value=value)


_CacheKey = tuple[int, int, int]  # the database file's st_dev and st_ino, the run id
GZIP_LEVEL = 6  # zlib's default: 19 MB of exposition to ~0.6 MB in a fraction of a second
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream


@dataclass(frozen=True, slots=True)
class MetricsBody:
    """One scrape's `/metrics` body as parts to send in turn, never joined: the first is
    the cached run, the same object for every client (see `scanner.serve.server`)."""

    parts: tuple[bytes, ...]
    gzipped: bool

    def joined(self) -> bytes:
        """The whole body in one object (a copy: for tests and small bodies)."""
        return b"".join(self.parts)


@dataclass(frozen=True, slots=True)
class GzipPrefix:
    """A run's text compressed once, up to a flush point, and the compressor's state there.

    Each scrape copies the compressor and adds only its own small metrics: the prefix
    plus that tail is one gzip stream (one member, which every client decodes; curl and
    some libraries stop after the first member of a concatenation), without compressing
    19 MB per scrape.
    """

    compressed: bytes
    compressor: zlib._Compress

    @classmethod
    def of(cls, text: bytes) -> GzipPrefix:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        compressed = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return cls(compressed, compressor)

    def completed_with(self, tail: bytes) -> bytes:
        """The rest of the stream after `compressed`: `tail` and the gzip trailer."""
        compressor = self.compressor.copy()
        return compressor.compress(tail) + compressor.flush()


def report_problem(message: str) -> None:
    """A problem found while serving (a scrape that could not read the history, a
    connection the listener dropped), said on stderr the way every command says one."""
    report_error(f"reachscan: {message}")


@dataclass(frozen=True, slots=True)
class _CachedRun:
    key: _CacheKey
    text: bytes
    gzip: GzipPrefix | None = None


class MetricsRenderer:
    """Renders `/metrics` for any responder thread; shares only the cached run bytes.

    Each call opens the history read-only in the calling thread. A history that cannot be
    read gives `reachscan_history_up 0` (a scrape that fails outright would hide the
    reason); the reason goes to stderr once each time it changes, not once per scrape.
    """

    def __init__(
        self,
        db: Path,
        *,
        aggregates_only: bool = False,
        clock: Callable[[], float] = time.time,
        report: Callable[[str], None] = report_problem,
    ) -> None:
        self._db = db
        self._aggregates_only = aggregates_only
        self._clock = clock
        self._report = report
        self._lock = threading.Lock()
        self._cached: _CachedRun | None = None
        self._last_problem: str | None = None
        self.renders = 0  # runs rendered (not served from the cache), for the tests

    def render(self, *, gzip: bool = False) -> MetricsBody:
        """This scrape's body: the served run's metrics (cached) and serve's own (fresh).

        With `gzip`, one gzip stream: the run's part compressed once per run, and only
        serve's own few lines compressed per scrape.
        """
        try:
            cached, state = self._read(gzip=gzip)
        except HistoryError as error:
            self._note_problem(str(error))
            cached, state = None, HistoryState(False, NO_RUNS, None, None)
        else:
            self._note_problem(None)
        own = exposition(self_families(state, self._clock()))
        if not gzip:
            return MetricsBody((own,) if cached is None else (cached.text, own), gzipped=False)
        if cached is None or cached.gzip is None:  # (never both: _read made the gzip)
            return MetricsBody((zlib.compress(own, GZIP_LEVEL, _GZIP_WBITS),), gzipped=True)
        return MetricsBody((cached.gzip.compressed, cached.gzip.completed_with(own)), True)

    def _read(self, *, gzip: bool) -> tuple[_CachedRun | None, HistoryState]:
        try:
            identity = os.stat(self._db)
        except FileNotFoundError:
            # No scan has stored a run yet: nothing is wrong, there is just nothing to say.
            return None, HistoryState(True, NO_RUNS, None, None)
        except OSError as error:
            raise HistoryError(self._db, error.strerror or str(error)) from error
        with HistoryStore.open_readonly(self._db) as store:
            served = store.latest_complete_run()
            state = HistoryState(
                readable=True,
                runs=store.run_counts(),
                served=served,
                last_success=store.last_success_time(),
            )
            if served is None:
                return None, state
            key = (identity.st_dev, identity.st_ino, served.id)
            return self._run_metrics(store, served, key, gzip=gzip), state

    def _run_metrics(
        self, store: HistoryStore, run: RunRecord, key: _CacheKey, *, gzip: bool
    ) -> _CachedRun:
        # Rendering under the lock: concurrent scrapes of a new run wait for one pass over
        # its rows (and one compression) instead of each making their own.
        with self._lock:
            cached = self._cached
            if cached is None or cached.key != key:
                text = render_run(store, run, aggregates_only=self._aggregates_only)
                cached = _CachedRun(key, text)
                self.renders += 1
            if gzip and cached.gzip is None:
                cached = _CachedRun(key, cached.text, GzipPrefix.of(cached.text))
            self._cached = cached
            return cached

    def _note_problem(self, problem: str | None) -> None:
        with self._lock:
            changed, self._last_problem = problem != self._last_problem, problem
        if changed and problem is not None:
            self._report(problem)
        elif changed:
            self._report(f"history database {self._db} is readable again")


# --- HTTP ---------------------------------------------------------------------------


def respond(renderer: MetricsRenderer, request: Request) -> Response:
    """`/metrics`, a small index page at `/`, 404 for anything else (HEAD as GET: the
    server leaves the body out)."""
    if request.path == METRICS_PATH:
        body = renderer.render(gzip=request.accepts_gzip)
        encoding = (("Content-Encoding", "gzip"),) if body.gzipped else ()
        return Response(
            HTTPStatus.OK, CONTENT_TYPE, body.parts, (("Vary", "Accept-Encoding"), *encoding)
        )
    if request.path == "/":
        return Response(HTTPStatus.OK, "text/html; charset=utf-8", (INDEX_PAGE,))
    return Response(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", (NOT_FOUND_PAGE,))
