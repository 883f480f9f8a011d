"""YAML inventories: hosts with ports, expectations and labels, every error at FILE:LINE.

PyYAML's constructor loses line numbers and silently keeps the last of two duplicate
keys, so this module composes the document to *nodes* (which carry their marks) and walks
the nodes itself against the schema below. Scalars are read as the text the user wrote,
never through YAML's type guessing: `ports: [0x50]` is an error, not port 80, and a label
`on: yes` stays the string "yes".

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
expand past `MAX_NODES` nodes (a "billion laughs" bomb) or loop is refused before the
walk, by arithmetic on the node graph rather than by expanding it.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import yaml
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from scanner.core.errors import InventoryError, SpecError, decode_inventory
from scanner.core.hosts import HostPattern, SingleHost
from scanner.core.model import Expect, Origin, Proto
from scanner.core.ports import PortSpec
from scanner.core.services import lookup_service
from scanner.core.specs import TargetSpec, parse_host_spec, parse_ports

MAX_NODES = 1_000_000
"""The most nodes a document may have with every alias expanded."""

_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_MERGE_DEPTH = 32
_LABEL_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Characters YAML 1.1 refuses in a stream (PyYAML's Reader.NON_PRINTABLE).
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)

_TOP_KEYS = ("defaults", "groups", "hosts")
_DEFAULTS_KEYS = ("ports", "expect", "labels")
_GROUP_KEYS = ("name", "labels", "ports", "expect", "hosts")
_HOST_KEYS = ("host", "address", "ports", "expect", "labels")
_PORT_KEYS = ("port", "proto", "expect", "service")


def non_printable_error(text: str, file: str) -> InventoryError | None:
    """A character YAML refuses, at its line (PyYAML's own message names a position in
    "<unicode string>" on a second line)."""
    bad_character = _NON_PRINTABLE.search(text)
    if bad_character is None:
        return None
    line = text.count("\n", 0, bad_character.start()) + 1
    return InventoryError(
        Origin(file, line), f"character {ord(bad_character[0]):#06x} is not allowed in YAML"
    )


_YAML_ONLY_BREAKS = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
"""Line breaks to YAML (a lone CR, NEL, LINE and PARAGRAPH SEPARATOR) that an editor
does not count: after one of them, PyYAML's marks run ahead of the file's lines."""


def renumber_marks(roots: Sequence[Node], text: str) -> None:
    """Make every mark of the documents composed from `text` count lines as an editor
    does (newlines before its character index), so FILE:LINE points where the user
    looks. A file without YAML-only line breaks, the usual one, needs nothing."""
    if _YAML_ONLY_BREAKS.search(text) is None:
        return
    newlines = [match.start() for match in re.finditer("\n", text)]
    done: set[int] = set()
    pending = list(roots)
    while pending:
        node = pending.pop()
        if id(node) in done:
            continue  # an alias: the same node again (or a cycle)
        done.add(id(node))
        node.start_mark = _editor_mark(node.start_mark, newlines)
        node.end_mark = _editor_mark(node.end_mark, newlines)
        pending.extend(_children(node))


def _editor_mark(mark: Mark, newlines: list[int]) -> Mark:
    # libyaml's marks are read-only: a new one, with the line counted in newlines.
    line = bisect.bisect_left(newlines, mark.index)
    return Mark(mark.name, mark.index, line, mark.column, None, 0)  # no buffer: no snippet


def compose_error(error: yaml.YAMLError | RecursionError, text: str, file: str) -> InventoryError:
    """One FILE:LINE error for whatever composing the document raised, its line counted
    as an editor does. PyYAML marks an error at the end of a file without a final newline
    one line past the last line: clamp it to a line that exists."""
    if isinstance(error, RecursionError):
        return InventoryError(Origin(file, 0), "YAML nested too deeply")
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        last_line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        line = min(text.count("\n", 0, mark.index) + 1, last_line) if mark is not None else 0
        return InventoryError(Origin(file, line), f"YAML syntax error: {error.problem}")
    return InventoryError(Origin(file, 0), f"YAML error: {' '.join(str(error).split())}")


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
    text = decode_inventory(data, file)
    if isinstance(text, InventoryError):
        yield text
        return
    unreadable = non_printable_error(text, file)
    if unreadable is not None:
        yield unreadable
        return
    try:
        documents: list[Node | None] = list(yaml.compose_all(text, Loader=_LOADER))
    except (yaml.YAMLError, RecursionError) as error:
        yield compose_error(error, text, file)
        return
    renumber_marks([document for document in documents if document is not None], text)
    for document in documents:
        if document is None or _is_null(document):  # an empty document: nothing to read
            continue
        problem = graph_problem(document)
        if problem is not None:
            yield InventoryError(_origin(file, document), problem)
            continue
        yield from _Walker(file).document(document)


def graph_problem(root: Node) -> str | None:
    """Why the node graph may not be walked (a cycle, or too big expanded), or None.

    Aliases make the graph a DAG whose expanded size can be exponential in its node
    count; sizes are computed bottom-up once per distinct node, iteratively so deep
    nesting cannot exhaust the stack.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = min(total, MAX_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in on_path:
            return f"an alias refers to a node that contains it (line {node.start_mark.line + 1})"
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    if sizes[id(root)] > MAX_NODES:
        return f"aliases expand to more than {MAX_NODES:,} nodes; refusing to read it"
    return None


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _origin(file: str, node: Node) -> Origin:
    return Origin(file, node.start_mark.line + 1)


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
        self.errors.append(InventoryError(_origin(self.file, node), message))

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
        if "defaults" in top and not _is_null(top["defaults"]):
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
        origin = _origin(self.file, node)
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
        if _is_null(node):
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
        if _is_null(node):
            return ()
        if not isinstance(node, MappingNode):
            self.error(node, "'labels' must be a mapping of name: value")
            return ()
        labels: dict[str, str] = {}
        for key_node, value_node in self.pairs(node):
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
        if _is_null(node):
            self.error(node, f"{what} needs a value")
            return None
        return str(node.value)

    def sequence(self, node: Node | None, what: str) -> list[Node]:
        """The items of a list field; a missing or empty field is an empty list."""
        if node is None or _is_null(node):
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
        for key_node, value_node in self.pairs(node):
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

    def pairs(self, node: MappingNode, depth: int = 0) -> list[tuple[Node, Node]]:
        """The key/value pairs with `<<` merges applied; reports duplicate keys.

        Keys written in the mapping win over merged ones, and earlier merge sources over
        later ones, as the YAML merge-key spec says; those overrides are not duplicates.
        """
        explicit: dict[str, Node] = {}
        pairs: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self.merge_sources(value_node, depth))
                continue
            if isinstance(key_node, ScalarNode):
                first = explicit.get(key_node.value)
                if first is not None:
                    self.error(
                        key_node,
                        f"duplicate key {key_node.value!r}"
                        f" (first at line {first.start_mark.line + 1})",
                    )
                    continue
                explicit[key_node.value] = key_node
            pairs.append((key_node, value_node))
        seen = set(explicit)
        for key_node, value_node in merged:
            if isinstance(key_node, ScalarNode):
                if key_node.value in seen:
                    continue
                seen.add(key_node.value)
            pairs.append((key_node, value_node))
        return pairs

    def merge_sources(self, node: Node, depth: int) -> list[tuple[Node, Node]]:
        if depth >= _MAX_MERGE_DEPTH:
            self.error(node, "'<<' merges nested too deeply")
            return []
        sources = list(node.value) if isinstance(node, SequenceNode) else [node]
        merged: list[tuple[Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                self.error(source, "'<<' must merge a mapping or a list of mappings")
                continue
            merged.extend(self.pairs(source, depth + 1))
        return merged


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG
