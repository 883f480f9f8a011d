"""What travels between a distributed scan and its workers: plain JSON values, so the
broker needs no pickle (a worker never unpickles what a broker hands it).

A request is the scan as options (`argv`, the options that decide what is probed and
how, never outputs or history) and the inventory files' contents (the workers have no
copy of them); the answer is the shard's JSON Lines, compressed: the same bytes a
`--shard I/N` run writes, so `reachscan merge`'s rules account for them
(scanner/core/merging.py).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

BROKER_SCHEMES = ("redis", "rediss", "redis+socket")


class BrokerError(Exception):
    """The broker cannot be used: its URL is not Redis's, or nothing answers there."""


def check_broker_url(url: str) -> str:
    """`--broker URL`: a Redis URL (redis://HOST[:PORT][/DB], rediss://, redis+socket://).
    Checked before anything connects: an unknown scheme would make Celery try its default
    transport (AMQP) at some other address."""
    scheme = urlsplit(url).scheme
    if scheme not in BROKER_SCHEMES:
        raise BrokerError(
            f"--broker {url!r}: not a Redis URL (redis://HOST[:PORT][/DB], rediss://, "
            "redis+socket://PATH)"
        )
    return url


QUEUE_PREFIX = "reachscan."
TASK_NAME = "reachscan.scan_shard"


def queue_of(vantage: str) -> str:
    """The queue a vantage's workers consume: one per vantage, so a shard meant for a
    site is only ever taken by a worker standing there."""
    return QUEUE_PREFIX + vantage


@dataclass(frozen=True, slots=True)
class ShardRequest:
    """One shard of one vantage's scan. `files`: name -> text; in `argv` each file is
    written `@file:NAME`, replaced at the worker by where it wrote the file."""

    argv: tuple[str, ...]
    files: Mapping[str, str]
    shard: str  # "I/N"
    vantage: str

    def to_json(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "files": dict(self.files),
            "shard": self.shard,
            "vantage": self.vantage,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> ShardRequest:
        argv, files = value.get("argv"), value.get("files")
        shard, vantage = value.get("shard"), value.get("vantage")
        if not (
            isinstance(argv, list)
            and all(isinstance(item, str) for item in argv)
            and isinstance(files, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
            and isinstance(shard, str)
            and isinstance(vantage, str)
        ):
            raise ValueError("not a reachscan shard request")
        return cls(tuple(argv), files, shard, vantage)


FILE_MARK = "@file:"


@dataclass(frozen=True, slots=True)
class ShardAnswer:
    """What a worker sends back: the shard scan's exit status, its JSON Lines, and the
    end of its stderr (what went wrong at the vantage, said by the client)."""

    status: int
    lines: bytes
    errors: str
    worker: str

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "lines": base64.b64encode(zlib.compress(self.lines, 6)).decode("ascii"),
            "errors": self.errors,
            "worker": self.worker,
        }

    @classmethod
    def from_json(cls, value: object) -> ShardAnswer:
        if not isinstance(value, Mapping):
            raise ValueError("not a reachscan shard answer")
        status, lines = value.get("status"), value.get("lines")
        errors, worker = value.get("errors", ""), value.get("worker", "")
        if not (
            isinstance(status, int)
            and isinstance(lines, str)
            and isinstance(errors, str)
            and isinstance(worker, str)
        ):
            raise ValueError("not a reachscan shard answer")
        try:
            raw = zlib.decompress(base64.b64decode(lines, validate=True))
        except (ValueError, zlib.error) as error:
            raise ValueError(f"a shard answer whose lines cannot be read: {error}") from None
        return cls(status, raw, errors, worker)


@dataclass(frozen=True, slots=True)
class DistributedPlan:
    """`--broker`, `--vantages`, `--shards`, and the scan as it travels."""

    broker: str
    vantages: tuple[str, ...]
    shards: int
    argv: tuple[str, ...]  # the options that decide what is probed (protocol.py)
    files: Mapping[str, str]  # the inventory and exclusion files' contents
    wait_workers: float
    quorum: int | None = None  # check --quorum K
