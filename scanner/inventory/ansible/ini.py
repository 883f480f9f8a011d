"""Static Ansible INI inventories, read the way Ansible's `ini` inventory plugin reads them.

    top.example.com                    # before any section: ungrouped
    [web]
    web[01:20].example.com reachscan_ports="80,443"
    db-[a:f].example.com ansible_host=10.0.0.5
    [web:vars]
    reachscan_label_tier=frontend
    [prod:children]
    web

Host lines are split like a shell line (`shlex`, `#` starts a comment) into a host
pattern and `key=value` pairs; `[group:vars]` lines are `key=value` with everything after
the first `=` as the value. Values go through `ast.literal_eval` as in Ansible, so
`22` is a number, `[22, "53/udp"]` a list, `22,443` a list too (a Python tuple), and
anything that is not a Python literal (`22,U:53`, `https`) stays text. Matching Ansible
here is what lets the same file give the same endpoints read directly or through
`ansible-inventory --list`.

Where Ansible stops at the first mistake, this reader reports every one with its line
and reads on; a section with a mistake marks its group broken, so hosts whose settings
may be half-read are not probed.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field

from scanner.core.errors import InventoryError, SpecError, decode_inventory
from scanner.core.model import Origin
from scanner.inventory.ansible.ranges import expand_host_pattern
from scanner.inventory.ansible.tree import ALL, UNGROUPED, InventoryTree, Variable

COMMENT_MARKERS = ("#", ";")
SECTION = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?\Z")
"""Ansible's own section pattern; it never matches a bracketed IPv6 literal like `[::1]`."""

_GROUP_NAME = re.compile(r"([^:\]\s]+)\s*(?:#.*)?\Z")
_SECTION_KINDS = ("hosts", "children", "vars")
_SKIP = "skip"  # after a section header that could not be read


def parse_ini_inventory(data: bytes, *, file: str) -> tuple[InventoryTree, list[InventoryError]]:
    """The tree an INI inventory declares, and its errors in line order."""
    tree = InventoryTree(file)
    text = decode_inventory(data, file)
    if isinstance(text, InventoryError):
        return tree, [text]
    reader = _IniReader(file, tree)
    for number, raw_line in enumerate(text.split("\n"), start=1):
        reader.line(Origin(file, number), raw_line.strip())
    reader.check_declarations()
    return tree, sorted(reader.errors, key=lambda error: error.origin.line)


def ini_value(text: str) -> object:
    """A value as Ansible's INI plugin types it: a Python literal if it is one, else text."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes warn; Ansible ignores them too
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return text
    return _plain(value)


def _plain(value: object) -> object:
    """Ansible's coercions: tuples and sets become lists, bytes and complex become text."""
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(key): _plain(item) for key, item in value.items()
        }
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


@dataclass(slots=True)
class _IniReader:
    """Reads lines one by one, tracking the current section, as Ansible's parser does."""

    file: str
    tree: InventoryTree
    group: str = UNGROUPED
    kind: str = "hosts"
    errors: list[InventoryError] = field(default_factory=list)
    declared: set[str] = field(default_factory=lambda: {ALL, UNGROUPED})
    vars_sections: dict[str, Origin] = field(default_factory=dict)
    child_mentions: list[tuple[str, str, Origin]] = field(default_factory=list)

    def error(self, origin: Origin, message: str) -> None:
        self.errors.append(InventoryError(origin, message))

    def line(self, origin: Origin, line: str) -> None:
        if not line or line.startswith(COMMENT_MARKERS):
            return
        section = SECTION.match(line)
        if section is not None:
            self.section(origin, section[1], section[2] or "hosts")
        elif line.startswith("[") and line.endswith("]"):
            self.error(
                origin,
                f"bad section header {line}; write [group], [group:vars] or [group:children]"
                " (no spaces in group names)",
            )
            self.kind = _SKIP
        elif self.kind == "hosts":
            self.host_line(origin, line)
        elif self.kind == "vars":
            self.variable_line(origin, line)
        elif self.kind == "children":
            self.child_line(origin, line)

    def section(self, origin: Origin, group: str, kind: str) -> None:
        if kind not in _SECTION_KINDS:
            self.error(
                origin,
                f"unknown section type :{kind}; write [{group}], [{group}:vars]"
                f" or [{group}:children]",
            )
            self.kind = _SKIP
            return
        self.group, self.kind = group, kind
        self.tree.add_group(group, origin)
        if kind == "vars":
            self.vars_sections.setdefault(group, origin)
        else:
            self.declared.add(group)

    def host_line(self, origin: Origin, line: str) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as error:
            self.error(origin, f"cannot split the host line: {error}")
            self.tree.mark_group_broken(self.group)
            return
        if not tokens:
            return
        try:
            names = expand_host_pattern(tokens[0])
        except SpecError as error:
            self.error(origin, str(error))
            return
        variables: dict[str, Variable] = {}
        broken = False
        for token in tokens[1:]:
            key, equals, value = token.partition("=")
            if not equals or not key:
                self.error(origin, f"expected key=value after the host name, got {token!r}")
                broken = True
                continue
            variables[key] = Variable(ini_value(value), origin)
        for name in names:
            self.tree.add_host(name, self.group, origin)
            for key, variable in variables.items():
                self.tree.set_host_variable(name, key, variable)
            if broken:
                self.tree.mark_host_broken(name)

    def variable_line(self, origin: Origin, line: str) -> None:
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            self.error(origin, f"expected key=value in [{self.group}:vars], got {line!r}")
            self.tree.mark_group_broken(self.group)
            return
        self.tree.set_group_variable(
            self.group, key.strip(), Variable(ini_value(value.strip()), origin)
        )

    def child_line(self, origin: Origin, line: str) -> None:
        child = _GROUP_NAME.match(line)
        if child is None:
            self.error(origin, f"expected a group name in [{self.group}:children], got {line!r}")
            self.tree.mark_group_broken(self.group)
            return
        self.tree.add_child(self.group, child[1], origin)
        self.child_mentions.append((child[1], self.group, origin))

    def check_declarations(self) -> None:
        """Ansible's rule: a group must have a [group] or [group:children] section.

        A misspelt name in [parent:children] or [group:vars] would otherwise create an
        empty group silently, and its hosts' settings would never apply.
        """
        for child, parent, origin in self.child_mentions:
            if child not in self.declared:
                self.error(
                    origin,
                    f"[{parent}:children] names group {child!r}, which has no [{child}]"
                    f" or [{child}:children] section",
                )
        for group, origin in self.vars_sections.items():
            if group not in self.declared:
                self.error(
                    origin,
                    f"[{group}:vars] is for a group that has no [{group}]"
                    f" or [{group}:children] section",
                )
