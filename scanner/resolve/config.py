"""How to resolve: the resolver's configuration and the `--nameserver` parser (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from scanner.core.addresses import parse_ip_literal

DEFAULT_DNS_PORT = 53


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """How to resolve: which hosts file, which nameservers, which families, how patiently.

    `timeout` is the lifetime of one DNS lookup (one record type); it is split into
    `tries` equal attempts, so a lost UDP datagram costs one retry, not the whole lookup.
    """

    hosts_file: str | None = "/etc/hosts"
    nameservers: tuple[tuple[str, int], ...] = ()  # empty: from /etc/resolv.conf
    families: frozenset[int] = frozenset({4, 6})
    concurrency: int = 64
    timeout: float = 3.0
    tries: int = 2

    def __post_init__(self) -> None:
        if not self.families or not self.families <= {4, 6}:
            raise ValueError(
                f"families must be a non-empty subset of {{4, 6}}, not {self.families}"
            )
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.timeout <= 0 or self.tries < 1:
            raise ValueError("timeout must be positive and tries at least 1")


def parse_nameserver(text: str) -> tuple[str, int]:
    """Parse `ADDRESS`, `ADDRESS:PORT`, `[V6]:PORT`, `[V6]` or `V6` into (address, port).

    Only addresses are accepted: a nameserver given by name would itself need resolving,
    and through the very resolver being configured.
    """
    usage = "give an IP address, optionally with a port: 127.0.0.1, 127.0.0.1:5353, ::1, [::1]:5353"
    spec = text.strip()
    host, port_text = spec, ""
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise ValueError(f"nameserver {text!r}: missing ']'; {usage}")
        host, rest = spec[1:close], spec[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"nameserver {text!r}: unexpected {rest!r} after ']'; {usage}")
        port_text = rest[1:] if rest else ""
        if rest == ":":
            raise ValueError(f"nameserver {text!r}: empty port; {usage}")
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        if not port_text:
            raise ValueError(f"nameserver {text!r}: empty port; {usage}")
    address = parse_ip_literal(host, brackets=False)
    if address is None:
        raise ValueError(f"nameserver {text!r}: {host!r} is not an IP address; {usage}")
    if not port_text:
        return address.compressed, DEFAULT_DNS_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"nameserver {text!r}: port {port_text!r} is not in 1-65535; {usage}")
    return address.compressed, int(port_text)
