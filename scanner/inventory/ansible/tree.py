"""The group tree every Ansible source is read into, and each host's variables merged from it.

INI files, YAML files and the JSON of `ansible-inventory --list` all describe one thing:
groups with variables, child groups and hosts, and hosts with variables of their own. Each
reader fills an `InventoryTree`; `merged_hosts()` then gives every host with its variables
merged the way Ansible merges them (`ansible.inventory.helpers.sort_groups`):

- every host is in `all`; a host in no other group is in `ungrouped` (and a host placed
  in `ungrouped` and in another group is not, as Ansible's reconcile step decides);
- a host is in each ancestor of its groups; a group with no parent is a child of `all`;
- group variables apply in order of (depth, `ansible_group_priority`, name) - depth being
  the longest path from `all` - so parents before children, and among groups of one
  depth the higher priority, then the later name, wins; the host's own variables last.

The readers and this module never evaluate anything: a variable is a plain value with the
FILE:LINE where it was written, so an error about it can point there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from scanner.core.errors import InventoryError
from scanner.core.model import Origin

ALL = "all"
UNGROUPED = "ungrouped"
PRIORITY_VARIABLE = "ansible_group_priority"
_DEFAULT_PRIORITY = 1
_IMPLICIT_GROUPS = frozenset({ALL, UNGROUPED})


@dataclass(frozen=True, slots=True)
class OpaqueValue:
    """A value reachscan cannot read (a `!vault` secret); an error only if it is needed."""

    description: str


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable's value as the source gave it, and where it was written."""

    value: object
    origin: Origin


@dataclass(frozen=True, slots=True)
class MergedHost:
    """A host with its variables merged over all its groups, ready to become endpoints.

    `groups` are the host's groups (ancestors included, `all` and `ungrouped` left out),
    in precedence order: the most specific one last. `broken` means something it inherits
    from could not be read, so it must not be probed as if it had been.
    """

    name: str
    origin: Origin
    variables: Mapping[str, Variable]
    groups: tuple[str, ...]
    broken: bool


@dataclass(slots=True)
class _Group:
    name: str
    origin: Origin
    variables: dict[str, Variable] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    broken: bool = False


@dataclass(slots=True)
class _Host:
    name: str
    origin: Origin
    variables: dict[str, Variable] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    broken: bool = False


class InventoryTree:
    """Groups and hosts as one source declares them; filled by a reader, read once.

    Names are created on first mention, with the origin of that mention; later mentions
    add membership and variables (a later value of a variable replaces an earlier one,
    as in Ansible).
    """

    def __init__(self, file: str) -> None:
        self._groups: dict[str, _Group] = {}
        self._hosts: dict[str, _Host] = {}
        self.add_group(ALL, Origin(file, 0))
        self.add_group(UNGROUPED, Origin(file, 0))

    def add_group(self, name: str, origin: Origin) -> None:
        if name not in self._groups:
            self._groups[name] = _Group(name, origin)

    def add_child(self, parent: str, child: str, origin: Origin) -> None:
        self.add_group(parent, origin)
        self.add_group(child, origin)
        if child not in self._groups[parent].children:
            self._groups[parent].children.append(child)
            self._groups[child].parents.append(parent)

    def add_host(self, name: str, group: str | None, origin: Origin) -> None:
        """Declare a host, in `group` if one is given (None: only in `all`)."""
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host(name, origin)
        if group is not None:
            self.add_group(group, origin)
            if group not in host.groups:
                host.groups.append(group)

    def set_group_variable(self, group: str, key: str, variable: Variable) -> None:
        self.add_group(group, variable.origin)
        self._groups[group].variables[key] = variable

    def set_host_variable(self, host: str, key: str, variable: Variable) -> None:
        self.add_host(host, None, variable.origin)
        self._hosts[host].variables[key] = variable

    def mark_group_broken(self, group: str) -> None:
        """Something in this group could not be read: its hosts are not to be probed."""
        if group in self._groups:
            self._groups[group].broken = True

    def mark_host_broken(self, host: str) -> None:
        if host in self._hosts:
            self._hosts[host].broken = True

    def has_group(self, name: str) -> bool:
        return name in self._groups

    def merged_hosts(self) -> Iterator[MergedHost | InventoryError]:
        """Every host in first-mention order, with its merged variables.

        A loop among groups (`a` a child of `b`, `b` of `a`) is reported once and the
        groups in or below it are treated as broken: Ansible refuses such an inventory.
        """
        depths, looped = self._depths()
        if looped:
            first = min(looped, key=lambda name: self._groups[name].origin.line)
            yield InventoryError(
                self._groups[first].origin,
                "groups are their own ancestors through 'children': "
                + ", ".join(sorted(looped))
                + "; remove one of the links in the loop",
            )
        ancestors: dict[str, frozenset[str]] = {}
        for host in self._hosts.values():
            direct = [group for group in host.groups if group not in _IMPLICIT_GROUPS]
            member_of: set[str] = {ALL}
            for group in direct or [UNGROUPED]:
                member_of |= self._ancestors(group, ancestors)
            ordered = sorted(member_of, key=lambda name: self._precedence(name, depths))
            variables: dict[str, Variable] = {}
            for group in ordered:
                variables.update(self._groups[group].variables)
            variables.update(host.variables)
            broken = host.broken or any(
                self._groups[group].broken or group in looped for group in ordered
            )
            yield MergedHost(
                host.name,
                host.origin,
                variables,
                tuple(group for group in ordered if group not in _IMPLICIT_GROUPS),
                broken,
            )

    def _parents(self, name: str) -> list[str]:
        """A group's parents; a group nobody claims is a child of `all`, as in Ansible."""
        if name == ALL:
            return []
        return self._groups[name].parents or [ALL]

    def _depths(self) -> tuple[dict[str, int], frozenset[str]]:
        """Each group's longest distance from `all`, and the groups in or below a loop.

        Kahn's algorithm over parent -> child edges: a group gets its depth once all its
        parents have theirs; whatever never gets one sits in or under a cycle.
        """
        waiting = {name: len(self._parents(name)) for name in self._groups}
        children: dict[str, list[str]] = {name: [] for name in self._groups}
        for name in self._groups:
            for parent in self._parents(name):
                children[parent].append(name)
        depths = {ALL: 0}
        ready = deque([ALL])
        while ready:
            parent = ready.popleft()
            for child in children[parent]:
                depths[child] = max(depths.get(child, 0), depths[parent] + 1)
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        looped = frozenset(name for name, count in waiting.items() if count > 0)
        return depths, looped

    def _ancestors(self, name: str, known: dict[str, frozenset[str]]) -> frozenset[str]:
        """The group and every group above it (iterative: loops cannot recurse forever)."""
        cached = known.get(name)
        if cached is not None:
            return cached
        found = {name}
        pending = [name]
        while pending:
            for parent in self._parents(pending.pop()):
                if parent not in found:
                    found.add(parent)
                    pending.append(parent)
        result = known[name] = frozenset(found)
        return result

    def _precedence(self, name: str, depths: Mapping[str, int]) -> tuple[int, int, str]:
        return depths.get(name, 0), self._priority(name), name

    def _priority(self, name: str) -> int:
        """`ansible_group_priority`; Ansible ignores a value that is not a whole number."""
        variable = self._groups[name].variables.get(PRIORITY_VARIABLE)
        if variable is None or isinstance(variable.value, bool):
            return _DEFAULT_PRIORITY
        try:
            return int(str(variable.value))
        except ValueError:
            return _DEFAULT_PRIORITY
