"""The sockets of `reachscan serve`: one event-loop thread and a fixed few responders.

Why not a thread per connection (http.server's ThreadingHTTPServer, which served before):
a 65,535-endpoint run's `/metrics` is about 19 MB, and each handler thread built and held
its own copy while a client read it. A hundred clients that connected and never read took
the process from 297 MB to 1,886 MB; two thousand that connected and never spoke made
1,910 threads, and the next real scrape timed out. So here, with every bound in `Limits`:

- **Threads are fixed**: this loop (one thread, `selectors`, non-blocking sockets) reads
  every request and writes every response; `Limits.responders` threads build responses,
  because building `/metrics` reads SQLite and may take seconds for a new run. Nothing a
  client does starts a thread.
- **Memory per client is a few small objects**: a response body is a tuple of parts sent
  through memoryviews, never joined or copied, so every client of a run shares the one
  rendered bytes object (`MetricsRenderer` renders a run once).
- **Connections are bounded** (`max_connections`). A new connection past the bound takes
  the place of the oldest one that has not sent a whole request yet (a scraper sends its
  request at once; one that has not is either slow or not a scraper); if every connection
  is busy being answered, the new one is answered 503 (at most `max_refusals` such
  answers at a time; past those, it is reset).
- **Idle and stalled clients are dropped**: a connection that has not sent a whole request
  within `request_timeout` seconds, or that takes nothing of its response for
  `send_timeout` seconds, is closed with an RST (`SO_LINGER` 0), which also frees the
  kernel's send buffer at once. Both are checked on every turn of the loop.
- **Out of descriptors** (`EMFILE` on accept): the oldest idle connection is dropped to
  make room; with none to drop, accepting pauses for a moment instead of spinning.
- **A connection that failed before it was accepted** is skipped and accepting goes on:
  Linux's accept() passes the new connection's pending network error on as its own
  (accept(2): ECONNABORTED, EPROTO, ENETDOWN, EHOSTUNREACH, … "should be treated like
  EAGAIN"; EPERM when a firewall forbids it). Any other error is the server's own and
  ends `serve_forever` with it, for the command to say and exit non-zero.

A response is sent whole, the connection shut for writing, and then the server reads
(and ignores) whatever the client still sends until it closes, for at most
`linger_timeout` seconds: closing a socket with unread input makes the kernel send an
RST, which can destroy the end of the response before the client has read it.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from scanner.serve.http import (
    MAX_HEAD,
    Method,
    Request,
    Response,
    error_response,
    head_length,
    oversized_head,
    parse_request,
    response_head,
)

Respond = Callable[[Request], Response]
"""Builds the response to a request; runs in a responder thread, may block on I/O."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the server keeps (README, "Scraping instead of the textfile")."""

    max_connections: int = 512
    request_timeout: float = 10.0  # seconds to send a whole request head
    send_timeout: float = 30.0  # seconds a client may take nothing of its response
    linger_timeout: float = 5.0  # seconds to wait for the client's close after a response
    max_refusals: int = 16  # 503 answers being sent at once past max_connections
    responders: int = 2  # threads building responses
    backlog: int = 1024  # a short accept queue drops SYNs (docs/KERNEL_NOTES.md section 5)
    accept_burst: int = 64  # connections accepted per turn before serving the others
    sends_per_turn: int = 4  # send() calls per connection per turn, so one cannot hog it

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.responders < 1:
            raise ValueError("max_connections and responders must be at least 1")


DEFAULT_LIMITS = Limits()


class _Phase(enum.Enum):
    READING = "reading the request head"
    RESPONDING = "waiting for a responder"
    SENDING = "sending the response"
    LINGERING = "waiting for the client to close"


class _Connection:
    """One client's state; touched only by the event-loop thread."""

    __slots__ = ("deadline", "method", "pending", "phase", "received", "refused", "sock")

    def __init__(self, sock: socket.socket, deadline: float, *, refused: bool = False) -> None:
        self.sock = sock
        self.refused = refused  # answered 503: past the bound, not counted in it
        self.phase = _Phase.READING
        self.deadline: float | None = deadline
        self.received = b""
        self.method = Method.GET
        self.pending: collections.deque[memoryview] = collections.deque()


_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_CONNECTION_FAILED = frozenset(
    {
        errno.ECONNABORTED,
        errno.ECONNRESET,
        errno.EPROTO,
        errno.ENOPROTOOPT,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENONET,
        errno.EOPNOTSUPP,
        errno.EPERM,
        errno.ETIMEDOUT,
    }
)
"""accept() errors that belong to the one connection being accepted (accept(2), "Error
handling"): that connection is lost, the listener is fine."""
_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 seconds: close() sends an RST
_ACCEPT_PAUSE = 0.1  # seconds without accepting when out of descriptors
_LONGEST_WAIT = 1.0  # seconds select() waits at most, so a stop is seen promptly


class MetricsHttpServer:
    """Serves `respond`'s answers on a listening socket until `shutdown()`.

    `serve_forever()` runs the event loop in the calling thread; `shutdown()` (from any
    other thread) makes it return, closes every connection and stops the responders.
    """

    def __init__(
        self,
        host: str,
        port: int,
        family: socket.AddressFamily,
        respond: Respond,
        *,
        server_name: str,
        limits: Limits = DEFAULT_LIMITS,
        report: Callable[[str], None] = lambda message: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._respond = respond
        self._server_name = server_name
        self.limits = limits
        self._report = report
        self._clock = clock
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(limits.backlog)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.server_port: int = self._listener.getsockname()[1]
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._connections: dict[socket.socket, _Connection] = {}  # oldest first
        self._answered: collections.deque[tuple[_Connection, Response]] = collections.deque()
        self._jobs: collections.deque[tuple[_Connection, Request] | None] = collections.deque()
        self._jobs_waiting = threading.Semaphore(0)
        self._responders = [
            threading.Thread(target=self._responder, name=f"reachscan-serve-{i}", daemon=True)
            for i in range(limits.responders)
        ]
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._accept_paused_until: float | None = None
        self._last_failure: str | None = None
        self._failure_lock = threading.Lock()

    # --- for the command and the tests ---------------------------------------------------

    @property
    def open_connections(self) -> int:
        """Connections held now (read from any thread: a snapshot)."""
        return len(self._connections)

    def serve_forever(self) -> None:
        for responder in self._responders:
            responder.start()
        self._selector.register(self._listener, selectors.EVENT_READ, self._accept)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, self._drain_wakeups)
        try:
            while not self._stopping.is_set():
                self._turn()
        finally:
            for connection in list(self._connections.values()):
                self._close(connection)
            for _ in self._responders:
                self._submit(None)
            self._stopped.set()

    def shutdown(self) -> None:
        """Make `serve_forever` return and wait until it has (it must be running)."""
        self._stopping.set()
        self._wake()
        self._stopped.wait()

    def close(self) -> None:
        self._selector.close()
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def __enter__(self) -> MetricsHttpServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the loop -----------------------------------------------------------------------

    def _turn(self) -> None:
        for key, events in self._selector.select(self._wait_for()):
            callback: Callable[[Any, int], None] = key.data
            callback(key.fileobj, events)
        while self._answered:
            connection, response = self._answered.popleft()
            if connection.sock in self._connections:
                self._start_sending(connection, response)
        self._expire(self._clock())

    def _wait_for(self) -> float:
        now = self._clock()
        deadlines = [c.deadline for c in self._connections.values() if c.deadline is not None]
        if self._accept_paused_until is not None:
            deadlines.append(self._accept_paused_until)
        return max(0.0, min([now + _LONGEST_WAIT, *deadlines]) - now)

    def _expire(self, now: float) -> None:
        for connection in list(self._connections.values()):
            if connection.deadline is not None and connection.deadline <= now:
                self._close(connection, abort=connection.phase is not _Phase.LINGERING)
        if self._accept_paused_until is not None and self._accept_paused_until <= now:
            self._resume_accepting()

    # --- accepting ----------------------------------------------------------------------

    def _accept(self, listener: socket.socket, events: int) -> None:
        for _ in range(self.limits.accept_burst):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _CONNECTION_FAILED:
                    continue  # that connection is gone; the next one may be waiting
                if error.errno not in _OUT_OF_DESCRIPTORS:
                    raise
                if not self._drop_oldest_idle():
                    self._pause_accepting()
                    return
                continue
            sock.setblocking(False)
            refusals = sum(1 for c in self._connections.values() if c.refused)
            full = len(self._connections) - refusals >= self.limits.max_connections
            if full and not self._drop_oldest_idle():
                self._refuse(sock, can_answer=refusals < self.limits.max_refusals)
                continue
            connection = _Connection(sock, self._clock() + self.limits.request_timeout)
            self._connections[sock] = connection
            self._selector.register(sock, selectors.EVENT_READ, self._on_readable)

    def _drop_oldest_idle(self) -> bool:
        """Close the oldest connection still reading its request, preferring one that has
        sent nothing at all; False if every connection is being answered."""
        reading = [c for c in self._connections.values() if c.phase is _Phase.READING]
        if not reading:
            return False
        silent = [c for c in reading if not c.received]
        self._close((silent or reading)[0], abort=True)
        return True

    def _refuse(self, sock: socket.socket, *, can_answer: bool) -> None:
        """A connection past the bound: answered 503 like any response (sent, then the
        client's close awaited, so its unread request does not turn the answer into an
        RST), or, with `max_refusals` answers already going out, reset at once."""
        connection = _Connection(sock, self._clock(), refused=True)
        self._connections[sock] = connection
        self._selector.register(sock, selectors.EVENT_READ, self._on_readable)
        if not can_answer:
            self._close(connection, abort=True)
            return
        response = error_response(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"{self.limits.max_connections} connections are being answered; try again",
        )
        self._start_sending(connection, response)

    def _pause_accepting(self) -> None:
        if self._accept_paused_until is None:
            self._selector.unregister(self._listener)
        self._accept_paused_until = self._clock() + _ACCEPT_PAUSE

    def _resume_accepting(self) -> None:
        self._accept_paused_until = None
        self._selector.register(self._listener, selectors.EVENT_READ, self._accept)

    # --- reading a request ----------------------------------------------------------------

    def _on_readable(self, sock: socket.socket, events: int) -> None:
        connection = self._connections.get(sock)
        if connection is None:
            return  # closed earlier in this turn (dropped to make room)
        try:
            data = sock.recv(MAX_HEAD + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(connection, abort=True)
            return
        if not data:  # the client closed (or gave up before its answer)
            self._close(connection)
            return
        if connection.phase is _Phase.LINGERING:
            return  # whatever follows the request is not read, only consumed
        connection.received += data
        length = head_length(connection.received)
        if length is None and len(connection.received) <= MAX_HEAD:
            return
        if length is None or length > MAX_HEAD:
            self._start_sending(connection, oversized_head(connection.received[: MAX_HEAD + 1]))
            return
        parsed = parse_request(connection.received[:length])
        connection.received = b""
        if isinstance(parsed, Response):
            self._start_sending(connection, parsed)
            return
        connection.method = parsed.method
        connection.phase = _Phase.RESPONDING
        connection.deadline = None  # building the answer is our time, not the client's
        self._selector.unregister(sock)
        self._submit((connection, parsed))

    # --- responders -------------------------------------------------------------------

    def _submit(self, job: tuple[_Connection, Request] | None) -> None:
        self._jobs.append(job)
        self._jobs_waiting.release()

    def _responder(self) -> None:
        while True:
            self._jobs_waiting.acquire()
            job = self._jobs.popleft()
            if job is None:
                return
            connection, request = job
            self._answered.append((connection, self._answer(request)))
            self._wake()

    def _answer(self, request: Request) -> Response:
        try:
            response = self._respond(request)
        except Exception as error:  # reported, answered 500, and serving goes on
            failure = f"cannot answer {request.path}: {type(error).__name__}: {error}"
            with self._failure_lock:  # once per distinct failure, not once per scrape
                new, self._last_failure = failure != self._last_failure, failure
            if new:
                self._report(failure)
            return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "see the server's stderr")
        with self._failure_lock:
            self._last_failure = None
        return response

    def _wake(self) -> None:
        # BlockingIOError: already awake (the buffer is full of wake-ups); OSError: closing.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _drain_wakeups(self, sock: socket.socket, events: int) -> None:
        try:
            while sock.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # --- sending ------------------------------------------------------------------------

    def _start_sending(self, connection: _Connection, response: Response) -> None:
        head = response_head(response, server=self._server_name, now=time.time())
        body = response.body if connection.method is Method.GET else ()
        connection.pending = collections.deque(memoryview(part) for part in (head, *body) if part)
        connection.deadline = self._clock() + self.limits.send_timeout
        if connection.phase is _Phase.RESPONDING:
            self._selector.register(connection.sock, selectors.EVENT_WRITE, self._on_writable)
        else:
            self._selector.modify(connection.sock, selectors.EVENT_WRITE, self._on_writable)
        connection.phase = _Phase.SENDING
        self._on_writable(connection.sock, selectors.EVENT_WRITE)

    def _on_writable(self, sock: socket.socket, events: int) -> None:
        connection = self._connections.get(sock)
        if connection is None:
            return  # closed earlier in this turn
        pending = connection.pending
        for _ in range(self.limits.sends_per_turn):
            if not pending:
                break
            try:
                sent = sock.send(pending[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the client reset or went away: nothing more to say to it
                self._close(connection, abort=True)
                return
            connection.deadline = self._clock() + self.limits.send_timeout
            if sent == len(pending[0]):
                pending.popleft()
            else:
                pending[0] = pending[0][sent:]  # a view of the same bytes: no copy
        if not pending:
            self._linger(connection)

    def _linger(self, connection: _Connection) -> None:
        try:
            connection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(connection)
            return
        connection.phase = _Phase.LINGERING
        connection.deadline = self._clock() + self.limits.linger_timeout
        self._selector.modify(connection.sock, selectors.EVENT_READ, self._on_readable)

    # --- closing ------------------------------------------------------------------------

    def _close(self, connection: _Connection, *, abort: bool = False) -> None:
        sock = connection.sock
        if self._connections.pop(sock, None) is None:
            return
        if connection.phase is not _Phase.RESPONDING:
            self._selector.unregister(sock)
        connection.pending.clear()
        if abort:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
        sock.close()
        if self._accept_paused_until is not None:
            self._resume_accepting()  # a descriptor is free again
