"""YAML inventories: hosts with ports, expectations and labels, every error at FILE:LINE.

PyYAML's constructor loses line numbers and silently keeps the last of two duplicate
keys, so the document is composed to *nodes* (which carry their marks; the hygiene of
that lives in `yamlnodes`) and this module walks the nodes against the schema below.
Scalars are read as the text the user wrote, never through YAML's type guessing:
`ports: [0x50]` is an error, not port 80, and a label `on: yes` stays the string "yes".

    defaults: {ports: [22], expect: open, labels: {env: prod}}    # all optional
    groups:
      - name: web                       # adds the label group=web
        labels: {role: frontend}
        ports: [80, 443]                # replaces the defaults' ports
        hosts: [web1.example.com, {host: web2.example.com, expect: refused}]
    hosts:
      - host: db1.example.com           # a name, an address, a CIDR block or a range
        address: 10.0.0.5               # optional pinned address, probed instead of DNS
        ports: [5432, "53/udp", https, {port: 23, expect: refused}]
        labels: {team: data}            # merged over group and defaults labels

An entry with any error yields no endpoints (a half-understood entry must not be probed
as if it were right), but every other entry is still read, so one run reports every
mistake in the file. Anchors, aliases and `<<` merge keys work; a document whose aliases
expand past `yamlnodes.MAX_NODES` nodes (a "billion laughs" bomb) or loop is refused before the
walk, by arithmetic on the node graph rather than by expanding it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from scanner.core.errors import InventoryError, SpecError
from scanner.core.hosts import HostPattern, SingleHost
from scanner.core.model import Expect, Origin, Proto
from scanner.core.ports import PortSpec
from scanner.core.services import lookup_service
from scanner.core.specs import TargetSpec, parse_host_spec, parse_ports
from scanner.inventory.yamlnodes import (
    compose_nodes,
    graph_problem,
    is_null,
    mapping_pairs,
    node_origin,
)

_LABEL_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TOP_KEYS = ("defaults", "groups", "hosts")
_DEFAULTS_KEYS = ("ports", "expect", "labels")
_GROUP_KEYS = ("name", "labels", "ports", "expect", "hosts")
_HOST_KEYS = ("host", "address", "ports", "expect", "labels")
_PORT_KEYS = ("port", "proto", "expect", "service")


def _named(ports: PortSpec, service: str) -> PortSpec:
    """`{port: 15432, service: postgresql}`: a service on a port other than its own. The
    name is kept, so the diagnosis can try the service's registered port (5432)."""
    lookup_service(service)  # SpecError for a name we do not know
    return PortSpec.of(ports.ranges, [(port, proto, service) for port, proto, _ in ports])


def read_yaml_inventory(path: str) -> Iterator[TargetSpec | InventoryError]:
    """Read the YAML inventory at `path`; an unreadable file is one error at line 0."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        yield InventoryError(Origin(path, 0), f"cannot read {path}: {error.strerror or error}")
        return
    yield from parse_yaml_inventory(data, file=path)


def parse_yaml_inventory(data: bytes, *, file: str) -> Iterator[TargetSpec | InventoryError]:
    """Parse a YAML inventory's bytes into specs and errors, entry by entry."""
    documents = compose_nodes(data, file, single_document=False)
    if isinstance(documents, InventoryError):
        yield documents
        return
    for document in documents:
        problem = graph_problem(document)
        if problem is not None:
            yield InventoryError(node_origin(file, document), problem)
            continue
        yield from _Walker(file).document(document)


@dataclass(frozen=True, slots=True)
class _PortChoice:
    """Ports written together, with their own expectation if the item gave one."""

    ports: PortSpec
    expect: Expect | None
    node: Node


@dataclass(frozen=True, slots=True)
class _Settings:
    """What a level (defaults, group, host) says; None means "inherit"."""

    ports: tuple[_PortChoice, ...] | None = None
    expect: Expect | None = None
    labels: tuple[tuple[str, str], ...] = ()
    broken: bool = False  # an error was reported here: entries below must not be probed

    def overlay(self, closer: _Settings) -> _Settings:
        """These settings overridden by a closer level's; labels merge key by key."""
        return _Settings(
            ports=closer.ports if closer.ports is not None else self.ports,
            expect=closer.expect if closer.expect is not None else self.expect,
            labels=tuple({**dict(self.labels), **dict(closer.labels)}.items()),
            broken=self.broken or closer.broken,
        )


@dataclass(slots=True)
class _Walker:
    """Walks one document's nodes, collecting errors to report in file order."""

    file: str
    errors: list[InventoryError] = field(default_factory=list)

    def error(self, node: Node, message: str) -> None:
        self.errors.append(InventoryError(node_origin(self.file, node), message))

    def flush(self) -> Iterator[InventoryError]:
        """The errors collected so far, in line order (keys are checked before values)."""
        yield from sorted(self.errors, key=lambda error: error.origin.line)
        self.errors.clear()

    def document(self, root: Node) -> Iterator[TargetSpec | InventoryError]:
        top = self.mapping(root, _TOP_KEYS, "the inventory")
        if top is None:
            yield from self.flush()
            return
        defaults = _Settings()
        if "defaults" in top and not is_null(top["defaults"]):
            fields = self.mapping(top["defaults"], _DEFAULTS_KEYS, "defaults")
            defaults = self.settings(fields) if fields is not None else _Settings(broken=True)
        yield from self.flush()
        for group_node in self.sequence(top.get("groups"), "groups"):
            yield from self.group(group_node, defaults)
        for entry in self.sequence(top.get("hosts"), "hosts"):
            yield from self.host_entry(entry, defaults)
        yield from self.flush()

    def group(self, node: Node, defaults: _Settings) -> Iterator[TargetSpec | InventoryError]:
        fields = self.mapping(node, _GROUP_KEYS, "a group")
        if fields is None:
            yield from self.flush()
            return
        settings = defaults
        if "name" in fields:
            name = self.scalar(fields["name"], "the group name")
            group_label = _Settings(labels=(("group", name),) if name is not None else ())
            settings = settings.overlay(group_label)
        settings = settings.overlay(self.settings(fields))
        if self.errors:
            settings = settings.overlay(_Settings(broken=True))
        yield from self.flush()
        for entry in self.sequence(fields.get("hosts"), "hosts"):
            yield from self.host_entry(entry, settings)
        yield from self.flush()

    def host_entry(self, node: Node, inherited: _Settings) -> Iterator[TargetSpec | InventoryError]:
        if isinstance(node, ScalarNode):
            host_node: Node | None = node
            own = _Settings()
            pinned = None
        else:
            fields = self.mapping(node, _HOST_KEYS, "a host entry")
            if fields is None:
                yield from self.flush()
                return
            host_node = fields.get("host")
            if host_node is None:
                self.error(node, "missing 'host': every host entry needs one")
            own = self.settings(fields)
            pinned = self.pinned_address(fields["address"]) if "address" in fields else None
        hosts = self.host_pattern(host_node) if host_node is not None else None
        if hosts is not None and pinned is not None and not isinstance(hosts, SingleHost):
            self.error(node, "'address' pins one host; it cannot be used with a block or range")
        settings = inherited.overlay(own)
        if settings.ports is None and not settings.broken:
            self.error(node, "no ports: give ports here or in defaults")
        if self.errors or settings.broken or hosts is None or settings.ports is None:
            yield from self.flush()
            return
        yield from self.specs(node, hosts, pinned, settings, settings.ports)
        yield from self.flush()

    def specs(
        self,
        node: Node,
        hosts: HostPattern,
        pinned: str | None,
        settings: _Settings,
        choices: Sequence[_PortChoice],
    ) -> Iterator[TargetSpec]:
        """One spec per distinct expectation, so each spec stays one rectangle."""
        by_expect: dict[Expect, PortSpec] = {}
        for choice in choices:
            expect = choice.expect or settings.expect or Expect.OPEN
            for other_expect, other_ports in by_expect.items():
                if other_expect is not expect and other_ports.overlaps(choice.ports):
                    self.error(
                        choice.node,
                        f"a port here is also listed as {other_expect}; give each port once",
                    )
            previous = by_expect.get(expect)
            by_expect[expect] = choice.ports if previous is None else previous.union(choice.ports)
        if self.errors:
            return
        labels = tuple(sorted(settings.labels))
        origin = node_origin(self.file, node)
        for expect, ports in by_expect.items():
            yield TargetSpec(hosts, ports, expect, labels, pinned, origin)

    def settings(self, fields: dict[str, Node]) -> _Settings:
        """The ports, expect and labels among a mapping's fields (others are not read)."""
        errors_before = len(self.errors)
        ports = self.ports(fields["ports"]) if "ports" in fields else None
        expect = self.expect(fields["expect"]) if "expect" in fields else None
        labels = self.labels(fields["labels"]) if "labels" in fields else ()
        return _Settings(ports, expect, labels, broken=len(self.errors) > errors_before)

    def ports(self, node: Node) -> tuple[_PortChoice, ...] | None:
        if is_null(node):
            return None
        items = list(node.value) if isinstance(node, SequenceNode) else [node]
        if not items:
            self.error(node, "'ports' is empty: list at least one port")
        choices = []
        for item in items:
            choice = self.port_item(item)
            if choice is not None:
                choices.append(choice)
        return tuple(choices)

    def port_item(self, node: Node) -> _PortChoice | None:
        if isinstance(node, MappingNode):
            fields = self.mapping(node, _PORT_KEYS, "a port entry")
            if fields is None:
                return None
            if "port" not in fields:
                self.error(node, "missing 'port' in a port entry")
                return None
            errors_before = len(self.errors)
            text = self.scalar(fields["port"], "'port'")
            proto = self.protocol(fields["proto"]) if "proto" in fields else None
            expect = self.expect(fields["expect"]) if "expect" in fields else None
            service = self.scalar(fields["service"], "'service'") if "service" in fields else None
            if text is None or len(self.errors) > errors_before:
                return None
        else:
            text = self.scalar(node, "a port")
            proto = expect = service = None
            if text is None:
                return None
        try:
            ports = parse_ports(text, proto=proto)
            if service is not None:
                ports = _named(ports, service)
            return _PortChoice(ports, expect, node)
        except SpecError as error:
            self.error(node, str(error))
            return None

    def protocol(self, node: Node) -> Proto | None:
        text = self.scalar(node, "'proto'")
        if text is None:
            return None
        try:
            return Proto(text.lower())
        except ValueError:
            self.error(node, f"bad proto {text!r}; write tcp or udp")
            return None

    def expect(self, node: Node) -> Expect | None:
        text = self.scalar(node, "'expect'")
        if text is None:
            return None
        try:
            return Expect(text.lower())
        except ValueError:
            allowed = ", ".join(expect.value for expect in Expect)
            self.error(node, f"bad expect {text!r}; write one of {allowed}")
            return None

    def labels(self, node: Node) -> tuple[tuple[str, str], ...]:
        if is_null(node):
            return ()
        if not isinstance(node, MappingNode):
            self.error(node, "'labels' must be a mapping of name: value")
            return ()
        labels: dict[str, str] = {}
        for key_node, value_node in mapping_pairs(node, self.error):
            key = self.scalar(key_node, "a label name")
            if key is None:
                continue
            if not _LABEL_KEY.match(key):
                self.error(key_node, f"bad label name {key!r}: use letters, digits and _")
                continue
            value = self.scalar(value_node, f"label {key!r}")
            if value is not None:
                labels[key] = value
        return tuple(labels.items())

    def host_pattern(self, node: Node) -> HostPattern | None:
        text = self.scalar(node, "'host'")
        if text is None:
            return None
        try:
            return parse_host_spec(text)
        except SpecError as error:
            self.error(node, str(error))
            return None

    def pinned_address(self, node: Node) -> str | None:
        text = self.scalar(node, "'address'")
        if text is None:
            return None
        try:
            return str(ipaddress.ip_address(text.strip().strip("[]")))
        except ValueError:
            self.error(node, f"'address' must be an IP address, not {text!r}")
            return None

    def scalar(self, node: Node, what: str) -> str | None:
        """The text of a scalar as written; errors for lists, mappings and empty values."""
        if not isinstance(node, ScalarNode):
            kind = "a list" if isinstance(node, SequenceNode) else "a mapping"
            self.error(node, f"{what} must be a single value, not {kind}")
            return None
        if is_null(node):
            self.error(node, f"{what} needs a value")
            return None
        return str(node.value)

    def sequence(self, node: Node | None, what: str) -> list[Node]:
        """The items of a list field; a missing or empty field is an empty list."""
        if node is None or is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.error(node, f"'{what}' must be a list")
            return []
        return list(node.value)

    def mapping(self, node: Node, allowed: Sequence[str], where: str) -> dict[str, Node] | None:
        """A mapping's known fields by key, reporting unknown and duplicate keys."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{where} must be a mapping")
            return None
        fields: dict[str, Node] = {}
        for key_node, value_node in mapping_pairs(node, self.error):
            key = self.scalar(key_node, "a key")
            if key is None:
                continue
            if key not in allowed:
                self.error(
                    key_node, f"unknown key {key!r} in {where}; allowed: {', '.join(allowed)}"
                )
                continue
            fields[key] = value_node
        return fields
