"""A tiny authoritative DNS server on loopback, so tests never ask the machine's nameserver.

It runs in a background thread, which lets it answer in-process async tests on any event
loop and `reachscan` subprocesses alike. UDP answers that do not fit (512 bytes, or the
client's EDNS size) are truncated with TC set, as a real server does, and the same port
serves DNS over TCP for the retry — so tests can exercise the truncation fallback.

Behaviour per name: listed addresses answer A (IPv4) and AAAA (IPv6) queries; a listed
name without addresses of the asked type gets NOERROR with no data; an unlisted name gets
NXDOMAIN; `set_failure` overrides all that with an rcode, or with silence ("TIMEOUT").
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

TIMEOUT = "TIMEOUT"
"""The pseudo-rcode for `set_failure` that makes the responder never answer."""

_TTL = 60
_CLASSIC_UDP_LIMIT = 512  # RFC 1035 4.2.1, for clients that do not use EDNS
_TCP_LIMIT = 65535


class DnsResponder:
    """An authoritative responder for a fixed, runtime-changeable set of names.

    Use as a context manager: entering binds `host` on a free port (UDP and TCP on the
    same number) and starts the serving thread; leaving stops it and closes every socket.
    """

    def __init__(
        self, records: Mapping[str, Sequence[str]] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._records: dict[dns.name.Name, tuple[str, ...]] = {}
        self._failures: dict[tuple[dns.name.Name, dns.rdatatype.RdataType | None], str] = {}
        self._queries: list[tuple[str, str]] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread: threading.Thread | None = None
        for name, addresses in (records or {}).items():
            self.set_records(name, addresses)

    # -- configuration (any thread) ----------------------------------------------------

    def set_records(self, name: str, addresses: Sequence[str]) -> None:
        """Make `name` exist with exactly these addresses (empty: exists, no records)."""
        canonical = tuple(ipaddress.ip_address(address).compressed for address in addresses)
        with self._lock:
            self._records[dns.name.from_text(name)] = canonical

    def remove(self, name: str) -> None:
        """Make `name` not exist (NXDOMAIN)."""
        with self._lock:
            self._records.pop(dns.name.from_text(name), None)

    def set_failure(self, name: str, rcode: str, record_type: str | None = None) -> None:
        """Answer queries for `name` with `rcode` ("SERVFAIL", "REFUSED"...) or never
        ("TIMEOUT"), whatever records it has; only queries of `record_type` if given."""
        if rcode.upper() != TIMEOUT:
            dns.rcode.from_text(rcode)  # reject typos now, not in the serving thread
        rdtype = None if record_type is None else dns.rdatatype.from_text(record_type)
        with self._lock:
            self._failures[(dns.name.from_text(name), rdtype)] = rcode.upper()

    def clear_failure(self, name: str) -> None:
        """Undo every `set_failure` for `name`."""
        qname = dns.name.from_text(name)
        with self._lock:
            for key in [key for key in self._failures if key[0] == qname]:
                del self._failures[key]

    @property
    def queries(self) -> list[tuple[str, str]]:
        """A copy of the query log: (lowercase name without final dot, type), in order."""
        with self._lock:
            return list(self._queries)

    def clear_queries(self) -> None:
        with self._lock:
            self._queries.clear()

    @property
    def nameserver(self) -> tuple[str, int]:
        """(host, port), as `ResolverConfig.nameservers` wants it."""
        return (self.host, self.port)

    @property
    def address_text(self) -> str:
        """`HOST:PORT` (`[V6]:PORT`), as `--nameserver` wants it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> DnsResponder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._udp, self._tcp = _bind_same_port(self.host)
        self.port = self._udp.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="dns-responder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._wake_writer.send(b"x")
            self._thread.join(timeout=10)
            self._thread = None
        for sock in (self._udp, self._tcp, self._wake_reader, self._wake_writer):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = None

    # -- the serving thread -------------------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None
        connections: list[socket.socket] = []
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_reader, selectors.EVENT_READ)
            selector.register(self._udp, selectors.EVENT_READ)
            selector.register(self._tcp, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in selector.select():
                        sock = key.fileobj
                        if sock is self._wake_reader:
                            return
                        if sock is self._udp:
                            self._serve_udp(self._udp)
                        elif sock is self._tcp:
                            connection, _ = self._tcp.accept()
                            connection.settimeout(5)
                            connections.append(connection)
                            selector.register(connection, selectors.EVENT_READ)
                        else:
                            assert isinstance(sock, socket.socket)
                            if not self._serve_tcp(sock):
                                selector.unregister(sock)
                                connections.remove(sock)
                                sock.close()
            finally:
                for connection in connections:
                    connection.close()

    def _serve_udp(self, udp: socket.socket) -> None:
        try:
            wire, client = udp.recvfrom(_TCP_LIMIT)
        except OSError:
            return
        reply = self._reply(wire, tcp=False)
        if reply is not None:
            with contextlib.suppress(OSError):  # the client went away; nothing to tell it
                udp.sendto(reply, client)

    def _serve_tcp(self, connection: socket.socket) -> bool:
        """Answer one length-prefixed query; False when the connection is finished."""
        try:
            prefix = _receive_exactly(connection, 2)
            if prefix is None:
                return False
            wire = _receive_exactly(connection, int.from_bytes(prefix, "big"))
            if wire is None:
                return False
            reply = self._reply(wire, tcp=True)
            if reply is not None:
                connection.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            return False
        return True

    def _reply(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The wire reply to one query, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        qname, rdtype = question.name, question.rdtype
        with self._lock:
            self._queries.append(
                (qname.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(rdtype))
            )
            failure = self._failures.get((qname, rdtype), self._failures.get((qname, None)))
            addresses = self._records.get(qname)
        if failure == TIMEOUT:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if failure is not None:
            response.set_rcode(dns.rcode.from_text(failure))
        elif addresses is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            matching = [a for a in addresses if _record_type(a) == rdtype]
            if matching:
                response.answer.append(
                    dns.rrset.from_text_list(qname, _TTL, "IN", rdtype, matching)
                )
        limit = _TCP_LIMIT if tcp else _udp_limit(query)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)


def _record_type(address: str) -> dns.rdatatype.RdataType:
    return dns.rdatatype.A if ipaddress.ip_address(address).version == 4 else dns.rdatatype.AAAA


def _udp_limit(query: dns.message.Message) -> int:
    if query.edns < 0:
        return _CLASSIC_UDP_LIMIT
    return max(_CLASSIC_UDP_LIMIT, query.payload)


def _receive_exactly(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _bind_same_port(host: str) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on one free port of `host`.

    The kernel picks the UDP port; TCP may find that number taken, so try a few times.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(64)
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise OSError(f"no port on {host} was free for both UDP and TCP")
