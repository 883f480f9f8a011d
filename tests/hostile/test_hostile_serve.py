"""`reachscan serve` against clients that are not scrapers: silent, stalled, malformed.

A 65,535-endpoint run's `/metrics` is ~19 MB. Before, every connection got a thread and its
own copy of that body: 100 clients that never read took the server from 297 MB to 1,886 MB,
2,000 that never spoke made 1,910 threads and the next scrape timed out. What must hold
(README, "Scraping instead of the textfile"): a fixed number of threads, whatever clients
do; one copy of the body, however many clients read it; silent and stalled clients
dropped after a timeout; a real scrape answered all the while.

Threads are counted in /proc/PID/task of a real `reachscan serve`, or with
`threading.active_count()` around a server the test runs in its own process (with small
`Limits`, so a timeout test waits a second, not thirty). No test asserts a duration:
timeouts are checked as "closed eventually, within a generous bound". Everything is on
127.0.0.1.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import resource
import socket
import termios
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

from scanner.commands.serve import ListenAddress, metrics_server, serve_until_signalled
from scanner.history.store import HistoryStore
from scanner.serve.http import (
    MAX_HEAD,
    Method,
    Request,
    Response,
    accepts_gzip,
    head_length,
    parse_request,
)
from scanner.serve.metrics import CONTENT_TYPE, MetricsRenderer
from scanner.serve.server import DEFAULT_LIMITS, Limits, MetricsHttpServer
from tests.hostile.hostile_support import wait_for
from tests.support.history import VANTAGE, make_result, store_run
from tests.support.serve import samples_of, serving

pytestmark = pytest.mark.hostile

LOOPBACK = "127.0.0.1"
BOUND = 30.0  # seconds: generous waits for what must happen "eventually"
SCRAPE = b"GET /metrics HTTP/1.1\r\nHost: reachscan\r\nUser-Agent: Prometheus/2.53\r\n\r\n"


# --- clients --------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=BOUND)


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request`, read the response until the server closes: status, headers, body."""
    with connect(port) as sock:
        sock.sendall(request)
        received = read_to_end(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("iso-8859-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (field.partition(":") for field in fields)
    }
    return int(status_line.split()[1]), headers, body


def read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (an RST or an end of stream), waiting up to
    BOUND; whatever the server sent before closing is read and dropped."""
    sock.settimeout(BOUND)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def unread_bytes(sock: socket.socket) -> int:
    """What has arrived on `sock` and not been read (FIONREAD)."""
    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    return count[0]


@contextlib.contextmanager
def clients(port: int, count: int, request: bytes = b"") -> Iterator[list[socket.socket]]:
    """`count` connections that send `request` (if any) and then neither send nor read."""
    with contextlib.ExitStack() as stack:
        opened = []
        for _ in range(count):
            sock = stack.enter_context(connect(port))
            if request:
                sock.sendall(request)
            opened.append(sock)
        yield opened


@contextlib.contextmanager
def descriptors_for(count: int) -> Iterator[None]:
    """Room for `count` more descriptors in this process, the limit restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(os.listdir("/proc/self/fd")) + count + 64
    if wanted > hard and hard != resource.RLIM_INFINITY:
        pytest.skip(f"needs {wanted} descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- a server in this process ---------------------------------------------------------


@contextlib.contextmanager
def running(
    respond: Callable[[Request], Response],
    limits: Limits = DEFAULT_LIMITS,
    report: Callable[[str], None] = lambda message: None,
) -> Iterator[MetricsHttpServer]:
    server = MetricsHttpServer(
        LOOPBACK, 0, socket.AF_INET, respond, server_name="test", limits=limits, report=report
    )
    with server:
        thread = threading.Thread(target=server.serve_forever, name="test-serve-loop")
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join(timeout=BOUND)


def body_of(*parts: bytes) -> Callable[[Request], Response]:
    def respond(request: Request) -> Response:
        return Response(HTTPStatus.OK, "text/plain", parts)

    return respond


# --- a real `reachscan serve` -----------------------------------------------------------


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


SERVE_THREADS = 2 + Limits().responders  # the main thread, the event loop, the responders


def test_two_thousand_silent_connections_add_no_thread_and_a_scrape_still_succeeds(
    tmp_path: Path,
) -> None:
    db = tmp_path / "history.sqlite"
    with HistoryStore.open(db) as store:
        store_run(store, [make_result(port=22)], started=time.time())
    with serving(db) as served, descriptors_for(2_000), clients(served.port, 2_000):
        # The scrape queues behind all 2,000 in the accept queue: it is answered only
        # once the server has taken every one of them.
        scraped = served.scrape()
        assert threads_of(served.process.pid) <= SERVE_THREADS
    assert scraped[("reachscan_endpoints", (("state", "open"), ("vantage", VANTAGE)))] == 1


def test_a_hundred_clients_that_never_read_share_one_copy_of_the_metrics(
    tmp_path: Path,
) -> None:
    # A run whose /metrics is ~8 MB (long label values stand in for many endpoints: the
    # render costs a pass per row, and 65,535 rows take tens of seconds).
    db = tmp_path / "history.sqlite"
    owner = (("owner", "o" * 1_000),)
    results = [make_result(port=port, labels=owner) for port in range(1, 2_501)]
    with HistoryStore.open(db) as store:
        store_run(store, results, started=time.time())
    with serving(db) as served:
        payload = exchange(served.port, SCRAPE)[2]  # rendered once, now cached
        assert len(payload) > 7_000_000
        before = rss_bytes(served.process.pid)
        with clients(served.port, 100, SCRAPE) as stalled:
            wait_for(lambda: all(unread_bytes(sock) for sock in stalled), within=BOUND)
            grown = rss_bytes(served.process.pid) - before
            threads = threads_of(served.process.pid)
            status, _, body = exchange(served.port, SCRAPE)
    # A copy per client would be 100 x 8 MB; one shared copy leaves a few small objects
    # per connection (kernel socket buffers are not in the RSS).
    assert grown < 2 * len(payload), f"{grown / 1e6:.0f} MB for 100 clients"
    assert threads <= SERVE_THREADS
    assert status == 200 and abs(len(body) - len(payload)) < 100  # only serve's age differs


# --- bounds, timeouts and the connection limit (a server in this process) ---------------


def test_silent_and_stalled_clients_never_add_threads() -> None:
    body = bytes(8 << 20)  # more than the socket buffers take: the sends stall
    limits = Limits()
    baseline = threading.active_count()
    with (
        running(body_of(body), limits) as server,
        clients(server.server_port, 300),
        clients(server.server_port, 50, SCRAPE) as stalled,
    ):
        wait_for(lambda: all(unread_bytes(sock) for sock in stalled), within=BOUND)
        status, _, received = exchange(server.server_port, SCRAPE)
        threads = threading.active_count()
    assert threads <= baseline + 1 + limits.responders
    assert (status, len(received)) == (200, len(body))


def test_a_client_that_sends_no_request_is_closed_after_the_request_timeout() -> None:
    with running(body_of(b"ok\n"), Limits(request_timeout=0.5)) as server:
        with connect(server.server_port) as silent, connect(server.server_port) as partial:
            partial.sendall(b"GET /metrics HTTP/1.1\r\n")  # never the empty line
            assert closed_by_server(silent)
            assert closed_by_server(partial)
        wait_for(lambda: server.open_connections == 0, within=BOUND)
        assert exchange(server.server_port, SCRAPE)[0] == 200


def test_a_client_that_stops_reading_is_closed_after_the_send_timeout() -> None:
    body = bytes(64 << 20)
    with running(body_of(body), Limits(send_timeout=0.5)) as server:
        with connect(server.server_port) as stalled:
            stalled.sendall(SCRAPE)
            wait_for(lambda: unread_bytes(stalled) > 0, within=BOUND)
            wait_for(lambda: server.open_connections == 0, within=BOUND)
            with contextlib.suppress(ConnectionResetError):
                assert len(read_to_end(stalled)) < len(body)
        assert exchange(server.server_port, SCRAPE)[0] == 200


def test_past_the_connection_bound_the_oldest_silent_connection_makes_room() -> None:
    with (
        running(body_of(b"ok\n"), Limits(max_connections=4)) as server,
        clients(server.server_port, 10) as silent,
    ):
        assert exchange(server.server_port, SCRAPE)[0] == 200
        assert server.open_connections <= 4
        assert all(closed_by_server(sock) for sock in silent[:6])  # the oldest six


def test_with_every_connection_being_answered_a_new_client_gets_503() -> None:
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def slow(request: Request) -> Response:
        entered.release()
        gate.wait(BOUND)
        return Response(HTTPStatus.OK, "text/plain", (b"ok\n",))

    with (
        running(slow, Limits(max_connections=2, responders=2)) as server,
        clients(server.server_port, 2, SCRAPE) as waiting,
    ):
        for _ in waiting:
            assert entered.acquire(timeout=BOUND)
        status, _, body = exchange(server.server_port, SCRAPE)
        gate.set()
        answers = [read_to_end(sock) for sock in waiting]
    assert status == 503 and b"try again" in body
    assert all(answer.startswith(b"HTTP/1.0 200 OK\r\n") for answer in answers)


def test_a_responder_that_fails_gives_500_and_one_report() -> None:
    reports: list[str] = []

    def broken(request: Request) -> Response:
        raise MemoryError("render")

    with running(broken, report=reports.append) as server:
        statuses = [exchange(server.server_port, SCRAPE)[0] for _ in range(3)]
    assert statuses == [500, 500, 500]
    assert reports == ["cannot answer /metrics: MemoryError: render"]


# --- accept() errors ---------------------------------------------------------------------


class FailingAccepts:
    """A listening socket whose accept() raises `errors` (errnos, or exceptions) first, one
    per call, then accepts: what Linux's accept() does when a pending connection met a
    network error, without having to make the network fail."""

    def __init__(self, listener: socket.socket, errors: list[int | Exception]) -> None:
        self._listener = listener
        self._errors = list(errors)
        self.raised = 0

    def fileno(self) -> int:
        return self._listener.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        if self._errors:
            self.raised += 1
            error = self._errors.pop(0)
            if isinstance(error, Exception):
                raise error
            raise OSError(error, os.strerror(error))  # ECONNABORTED: ConnectionAbortedError
        return self._listener.accept()

    def close(self) -> None:
        self._listener.close()


def failing_accepts(server: MetricsHttpServer, errors: list[int | Exception]) -> FailingAccepts:
    """Put a FailingAccepts in place of `server`'s listening socket (before it serves)."""
    listener = FailingAccepts(server._listener, errors)
    server._listener = listener  # type: ignore[assignment]
    return listener


PER_CONNECTION_ERRORS = [
    errno.ECONNABORTED,
    errno.EPROTO,
    errno.ENETDOWN,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EPERM,
]


def test_a_connection_that_failed_before_accept_is_skipped_and_serving_goes_on() -> None:
    """Linux's accept() passes a pending connection's network error on as its own
    (EPROTO, ENETDOWN, ...); that killed the serving thread. Each is skipped now: one
    connection lost, the next ones answered."""
    server = MetricsHttpServer(
        LOOPBACK, 0, socket.AF_INET, body_of(b"ok"), server_name="test", limits=Limits()
    )
    listener = failing_accepts(server, list(PER_CONNECTION_ERRORS))
    with server:
        thread = threading.Thread(target=server.serve_forever, name="test-serve-loop")
        thread.start()
        try:
            answers = [exchange(server.server_port, SCRAPE)[::2] for _ in range(3)]
            serving = thread.is_alive()
        finally:
            server.shutdown()
            thread.join(timeout=BOUND)
    assert listener.raised == len(PER_CONNECTION_ERRORS)
    assert serving
    assert answers == [(200, b"ok")] * 3


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (errno.EBADF, "the server failed: Bad file descriptor (errno 9)"),
        (RuntimeError("a bug"), "the server failed: RuntimeError: a bug"),
    ],
    ids=["EBADF", "RuntimeError"],
)
def test_serve_exits_3_with_one_line_when_serving_dies(
    capsys: pytest.CaptureFixture[str], error: int | Exception, said: str
) -> None:
    """An error the server does not expect ended its thread with a traceback and `serve`
    exited 0, a clean stop to systemd: now one line and exit status 3."""
    renderer = MetricsRenderer(Path("/nonexistent/none.sqlite"), report=lambda message: None)
    address = ListenAddress(LOOPBACK, 0)
    server = metrics_server(address, renderer, Limits())
    failing_accepts(server, [error])
    with server, connect(server.server_port):  # waiting to be accepted: accept() is called
        status = serve_until_signalled(server, address)

    assert status == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"serving http://{LOOPBACK}:{server.server_port}/metrics",
        f"reachscan: serving stopped: {said}",
    ]


# --- malformed requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"\x00\xff\xfe garbage \x01\r\n\r\n", 400),
        (b"GET /metrics\r\n\r\n", 400),  # HTTP/0.9
        (b"GET /metrics HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /metrics HTTP/9\r\n\r\n", 400),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405),
        (b"G(T /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X-Pad: 0123456789\r\n" * 1_000 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"GET /metrics HTTP/1.0\n\n", 200),  # bare LF line ends are allowed
        (b"GET http://reachscan/metrics?x=1 HTTP/1.1\r\n\r\n", 200),
        (b"GET /other HTTP/1.1\r\n\r\n", 404),
    ],
)
def test_a_malformed_request_gets_its_status_and_serving_goes_on(
    tmp_path: Path, request_bytes: bytes, status: int
) -> None:
    renderer = MetricsRenderer(tmp_path / "none.sqlite", report=lambda message: None)
    server = metrics_server(ListenAddress(LOOPBACK, 0), renderer, Limits())
    thread = threading.Thread(target=server.serve_forever)
    with server:
        thread.start()
        try:
            answered, headers, _ = exchange(server.server_port, request_bytes)
            again = exchange(server.server_port, SCRAPE)
        finally:
            server.shutdown()
            thread.join(timeout=BOUND)
    assert answered == status
    assert headers["connection"] == "close"
    if status == 405:
        assert headers["allow"] == "GET, HEAD"
    assert (again[0], again[1]["content-type"]) == (200, CONTENT_TYPE)


def test_head_sends_the_length_and_no_body() -> None:
    with running(body_of(b"a" * 1000, b"b" * 24)) as server:
        status, headers, body = exchange(server.server_port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert (status, headers["content-length"], body) == (200, "1024", b"")


def test_the_request_head_rules() -> None:
    assert head_length(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    assert head_length(b"GET / HTTP/1.1\r\n\r\nrest") == len(b"GET / HTTP/1.1\r\n\r\n")
    assert parse_request(b"HEAD /metrics?x HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n") == (
        Request(Method.HEAD, "/metrics", accepts_gzip=True)
    )
    assert MAX_HEAD == 8192
    assert accepts_gzip("gzip")
    assert accepts_gzip("deflate, GZip;q=0.5")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("gzip;q=nonsense")
    assert not accepts_gzip("identity, *")
    assert not accepts_gzip("")


# --- gzip -------------------------------------------------------------------------------


def test_gzip_is_one_stream_and_the_run_is_compressed_once(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    results = [make_result(port=port) for port in range(1, 301)]
    with HistoryStore.open(db) as store:
        store_run(store, results, started=1_000.0)
    renderer = MetricsRenderer(db, clock=lambda: 2_000.0)
    plain = renderer.render()
    first, second = renderer.render(gzip=True), renderer.render(gzip=True)
    assert first.gzipped and not plain.gzipped
    assert second.parts[0] is first.parts[0]  # compressed once, shared
    # One gzip member holding exactly the plain body: decoders that stop after the first
    # member of a concatenation (curl among them) still see every metric.
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decoder.decompress(first.joined()) == plain.joined()
    assert decoder.eof and not decoder.unused_data
    assert renderer.renders == 1

    server = metrics_server(ListenAddress(LOOPBACK, 0), renderer, Limits())
    thread = threading.Thread(target=server.serve_forever)
    with server:
        thread.start()
        try:
            zipped = exchange(server.server_port, b"GET /metrics HTTP/1.1\r\n"
                              b"Accept-Encoding: gzip\r\n\r\n")  # fmt: skip
            refused = exchange(server.server_port, b"GET /metrics HTTP/1.1\r\n"
                               b"Accept-Encoding: gzip;q=0\r\n\r\n")  # fmt: skip
        finally:
            server.shutdown()
            thread.join(timeout=BOUND)
    assert zipped[1]["content-encoding"] == "gzip" and zipped[1]["vary"] == "Accept-Encoding"
    assert samples_of(zlib.decompress(zipped[2], 16 + zlib.MAX_WBITS).decode()) == samples_of(
        plain.joined().decode()
    )
    assert "content-encoding" not in refused[1] and refused[2] == plain.joined()
