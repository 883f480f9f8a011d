"""Names to addresses: the hosts file and DNS, every address with where it came from.

One module per job: `addresses` (the results, name normalisation, IP literals), `config`
(the configuration and `--nameserver`), `hostsfile` (glibc's hosts-file rules), `dnsquery`
(dnspython, its failures turned into values), `cache` (each name once) and `resolver`
(the order `hosts: files dns` asks them in). Other layers import from here.
"""

from scanner.resolve.addresses import (
    Resolution,
    ResolvedAddress,
    normalize_name,
    parse_address_literal,
)
from scanner.resolve.config import DEFAULT_DNS_PORT, ResolverConfig, parse_nameserver
from scanner.resolve.hostsfile import HostsTable, HostsWarning, load_hosts, parse_hosts
from scanner.resolve.resolver import Resolver

__all__ = [
    "DEFAULT_DNS_PORT",
    "HostsTable",
    "HostsWarning",
    "Resolution",
    "ResolvedAddress",
    "Resolver",
    "ResolverConfig",
    "load_hosts",
    "normalize_name",
    "parse_address_literal",
    "parse_hosts",
    "parse_nameserver",
]
