"""The JSON of `ansible-inventory -i SRC --list`: any inventory Ansible can read, at full fidelity.

Where Ansible is installed, this is the way to read dynamic inventories (cloud plugins,
scripts, constructed groups) and everything the static readers leave out:

    ansible-inventory -i production/ --list > fleet.json
    reachscan scan fleet.json

The shape (also that of inventory scripts, and of `--export`, which keeps group
variables in the groups instead of folding them into each host):

    {"_meta": {"hostvars": {"web1": {"ansible_host": "10.0.0.5"}}},
     "all": {"children": ["ungrouped", "web"]},
     "web": {"hosts": ["web1"], "vars": {...}, "children": [...]}}

A group may also be a plain list of host names (old inventory scripts). Ansible writes
secrets as `{"__ansible_vault": ...}` and untemplated strings as
`{"__ansible_unsafe": "..."}`; the first is opaque, the second a plain string.

JSON keeps no line numbers once parsed, so an error points at the line where the host or
group named in it first appears in the text (best effort; 0 when not found).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from scanner.core.errors import InventoryError, decode_inventory
from scanner.core.model import Origin
from scanner.inventory.ansible.tree import InventoryTree, OpaqueValue, Variable

META = "_meta"
_GROUP_KEYS = ("hosts", "vars", "children")
_VAULT = "__ansible_vault"
_UNSAFE = "__ansible_unsafe"
_STRING_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"')


def parse_json_inventory(data: bytes, *, file: str) -> tuple[InventoryTree, list[InventoryError]]:
    """The tree an `ansible-inventory --list` document declares, and its errors."""
    text = decode_inventory(data, file)
    if isinstance(text, InventoryError):
        return InventoryTree(file), [text]
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"not valid JSON: {error.msg}"
        return InventoryTree(file), [InventoryError(Origin(file, error.lineno), message)]
    except RecursionError:
        return InventoryTree(file), [InventoryError(Origin(file, 0), "JSON nested too deeply")]
    if not isinstance(document, dict):
        message = 'expected the JSON object of `ansible-inventory --list` ({"_meta": ...})'
        return InventoryTree(file), [InventoryError(Origin(file, 1), message)]
    reader = _JsonReader(file, InventoryTree(file), _first_lines(text))
    for group, content in document.items():
        if group != META:
            reader.group(group, content)
    reader.meta(document.get(META))
    return reader.tree, reader.errors


def plain_value(value: object) -> object:
    """A value with Ansible's `__ansible_unsafe` / `__ansible_vault` wrappers undone."""
    if isinstance(value, dict):
        if len(value) == 1 and _UNSAFE in value:
            return value[_UNSAFE]
        if len(value) == 1 and _VAULT in value:
            return OpaqueValue("an !vault value")
        return {key: plain_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_value(item) for item in value]
    return value


@dataclass(slots=True)
class _JsonReader:
    file: str
    tree: InventoryTree
    lines: dict[str, int]
    errors: list[InventoryError] = field(default_factory=list)

    def origin(self, name: str) -> Origin:
        return Origin(self.file, self.lines.get(name, 0))

    def broken_group(self, group: str, message: str) -> None:
        self.errors.append(InventoryError(self.origin(group), message))
        self.tree.mark_group_broken(group)

    def group(self, group: str, content: object) -> None:
        self.tree.add_group(group, self.origin(group))
        if content is None:
            return
        if isinstance(content, list):  # an inventory script's short form: just hosts
            content = {"hosts": content}
        if not isinstance(content, dict):
            self.broken_group(group, f"group {group!r} must be an object")
            return
        for key in content:
            if key not in _GROUP_KEYS:
                self.broken_group(
                    group, f"unknown key {key!r} in group {group!r}; expected hosts, vars, children"
                )
        for host in self.names(content.get("hosts"), "hosts", group):
            self.tree.add_host(host, group, self.origin(host))
        for child in self.names(content.get("children"), "children", group):
            self.tree.add_child(group, child, self.origin(child))
        variables = content.get("vars")
        if variables is None:
            return
        if not isinstance(variables, dict):
            self.broken_group(group, f"'vars' of group {group!r} must be an object")
            return
        for key, value in variables.items():
            self.tree.set_group_variable(
                group, key, Variable(plain_value(value), self.origin(group))
            )

    def meta(self, meta: object) -> None:
        hostvars = meta.get("hostvars") if isinstance(meta, dict) else None
        if hostvars is None:
            return
        if not isinstance(hostvars, dict):
            self.errors.append(
                InventoryError(self.origin(META), "'_meta.hostvars' must be an object")
            )
            return
        for host, variables in hostvars.items():
            self.tree.add_host(host, None, self.origin(host))
            if not isinstance(variables, dict):
                message = f"hostvars of {host!r} must be an object"
                self.errors.append(InventoryError(self.origin(host), message))
                self.tree.mark_host_broken(host)
                continue
            for key, value in variables.items():
                self.tree.set_host_variable(
                    host, key, Variable(plain_value(value), self.origin(host))
                )

    def names(self, value: object, key: str, group: str) -> list[str]:
        """The host or child names of a group; anything but a list of strings is an error."""
        if value is None:
            return []
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return [str(name) for name in value]
        self.broken_group(group, f"'{key}' of group {group!r} must be a list of names")
        return []


def _first_lines(text: str) -> dict[str, int]:
    """The 1-based line where each JSON string first occurs: the best a parsed JSON allows."""
    lines: dict[str, int] = {}
    line = 1
    position = 0
    for token in _STRING_TOKEN.finditer(text):
        line += text.count("\n", position, token.start())
        position = token.start()
        try:
            name = json.loads(token[0])
        except ValueError:
            continue
        lines.setdefault(name, line)
    return lines
