"""HTTP/1.x for one request per connection, as values: no sockets here.

`reachscan serve` answers scrapers (Prometheus, curl, a browser), each sending one GET and
reading one response. So the protocol it speaks is small and written out here, the rules
in one place, rather than inherited from `http.server`, whose handler reads from a
blocking socket and so needs a thread per connection (a thread that a client that never
speaks can hold for as long as it likes):

- A request is its head only: the request line and header fields up to the first empty
  line (CRLF or bare LF, as RFC 9112 section 2.2 allows). No body is read: GET and HEAD
  have none, and nothing else is accepted.
- The head may be at most `MAX_HEAD` bytes: past that, 414 when not even the request
  line ended, else 431 (RFC 6585). At most `MAX_FIELDS` header fields, for the same reason.
- `GET` and `HEAD`; any other method is 405 with `Allow` (RFC 9110 section 15.5.6).
  `HTTP/1.0` and `HTTP/1.1`; a later major version is 505, anything else 400.
- Responses are `HTTP/1.0` with `Connection: close` and a `Content-Length`, so every
  client knows where the body ends and that the connection is over. (http.server, which
  served before, answered HTTP/1.0 too.)
- A body is a tuple of parts sent one after the other and never joined: the big part of
  `/metrics` is one bytes object shared by every client being served (see `server`).
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

MAX_HEAD = 8192  # bytes: a Prometheus scrape's head is ~250
MAX_FIELDS = 100

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 section 5.6.2
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Method(enum.Enum):
    GET = "GET"
    HEAD = "HEAD"


@dataclass(frozen=True, slots=True)
class Request:
    """What the server acts on: the method, the target's path (no query) and whether the
    client takes a gzip body."""

    method: Method
    path: str
    accepts_gzip: bool = False


@dataclass(frozen=True, slots=True)
class Response:
    """A status, a content type and a body made of parts that are sent in turn.

    `headers` are extra fields (e.g. `Content-Encoding`); `Content-Type`,
    `Content-Length`, `Server`, `Date` and `Connection` are always written by
    `response_head`.
    """

    status: HTTPStatus
    content_type: str
    body: tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def content_length(self) -> int:
        return sum(len(part) for part in self.body)


def error_response(status: HTTPStatus, detail: str) -> Response:
    """A short plain-text answer saying what was wrong with the request."""
    headers = (("Allow", "GET, HEAD"),) if status is HTTPStatus.METHOD_NOT_ALLOWED else ()
    body = f"{status.value} {status.phrase}: {detail}\n".encode()
    return Response(status, "text/plain; charset=utf-8", (body,), headers)


def head_length(received: bytes) -> int | None:
    """How many bytes of `received` the request head takes, or None while it is incomplete."""
    end = _HEAD_END.search(received)
    return None if end is None else end.end()


def oversized_head(received: bytes) -> Response:
    """The answer to a head that passed `MAX_HEAD` without ending."""
    if _LINE_END.search(received) is None:
        return error_response(HTTPStatus.REQUEST_URI_TOO_LONG, f"over {MAX_HEAD} bytes")
    return error_response(
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request head over {MAX_HEAD} bytes"
    )


def parse_request(head: bytes) -> Request | Response:
    """A complete request head (as `head_length` measured it) to a request, or to the
    error response that refuses it."""
    # ISO-8859-1 maps every byte to a character, so decoding cannot fail; RFC 9110
    # section 5.5 treats other octets in field values as opaque, and so does this.
    lines = [line.decode("iso-8859-1") for line in _LINE_END.split(head) if line]
    request_line, *field_lines = lines or [""]
    words = request_line.split(" ")
    if len(words) != 3 or _CONTROL.search(request_line):
        return error_response(HTTPStatus.BAD_REQUEST, "expected METHOD TARGET HTTP/1.x")
    method_text, target, version = words
    version_match = _VERSION.fullmatch(version)
    if version_match is None:
        return error_response(HTTPStatus.BAD_REQUEST, f"unknown protocol version {version!r}")
    if version_match[1] != "1":
        return error_response(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1")
    if not _TOKEN.fullmatch(method_text):
        return error_response(HTTPStatus.BAD_REQUEST, "the method is not a token")
    if method_text not in Method.__members__:
        return error_response(HTTPStatus.METHOD_NOT_ALLOWED, f"{method_text} (GET or HEAD)")
    if len(field_lines) > MAX_FIELDS:
        return error_response(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"over {MAX_FIELDS} header fields"
        )
    encodings: list[str] = []
    for line in field_lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            # Also obsolete line folding (a line starting with a space): RFC 9112
            # section 5.2 lets a server refuse it with 400.
            return error_response(HTTPStatus.BAD_REQUEST, "malformed header field")
        if name.lower() == "accept-encoding":
            encodings.append(value)
    return Request(
        method=Method(method_text),
        path=urllib.parse.urlsplit(target).path,
        accepts_gzip=accepts_gzip(",".join(encodings)),
    )


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an `Accept-Encoding` value names gzip with a non-zero weight (RFC 9110
    section 12.5.3). A bare `*` is not taken as gzip: plain text is always acceptable."""
    for item in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        if coding.lower() not in ("gzip", "x-gzip"):
            continue
        weight = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0:
            return True
    return False


def response_head(response: Response, *, server: str, now: float) -> bytes:
    """The status line and header fields of `response`, ending with the empty line."""
    fields = [
        ("Server", server),
        ("Date", formatdate(now, usegmt=True)),
        ("Content-Type", response.content_type),
        ("Content-Length", str(response.content_length)),
        *response.headers,
        ("Connection", "close"),
    ]
    lines = [f"HTTP/1.0 {response.status.value} {response.status.phrase}"]
    lines += [f"{name}: {value}" for name, value in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")
