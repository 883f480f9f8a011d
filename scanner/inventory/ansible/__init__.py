"""Ansible inventories as reachscan inventories: INI, YAML and `ansible-inventory --list` JSON.

A fleet already described for Ansible should not be described again for reachscan. The
static readers cover INI and YAML files as Ansible's own plugins read them (groups,
`:vars`, `:children`, `web[01:20]` ranges); for anything dynamic, `ansible-inventory -i
SRC --list` renders the inventory to JSON, which is read at full fidelity.

Each reader builds the same group tree (`tree.py`), merges each host's variables by
Ansible's precedence, and turns the variables reachscan cares about into one spec per
host (`settings.py`): `ansible_host` is probed (an IP is pinned), `reachscan_ports`
(else `--ports`) are checked, `reachscan_expect` is the expectation, group names and
`reachscan_label_*` become labels. `ansible_port` is SSH's, and is ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, Literal, TextIO

from scanner.core.errors import InventoryError
from scanner.core.model import Origin
from scanner.core.ports import PortSpec
from scanner.core.specs import TargetSpec
from scanner.inventory.ansible.detect import (
    INVENTORY_FORMATS,
    Format,
    ansible_source_kind,
    detect_format,
)
from scanner.inventory.ansible.ini import parse_ini_inventory
from scanner.inventory.ansible.ranges import expand_host_pattern

if TYPE_CHECKING:
    from scanner.inventory.ansible.tree import InventoryTree

__all__ = [
    "INVENTORY_FORMATS",
    "Format",
    "detect_format",
    "expand_host_pattern",
    "parse_ansible_inventory",
    "read_ansible_inventory",
    "read_ansible_json",
]

STDIN_NAME = "<stdin>"

SourceKind = Literal["ini", "yaml", "json"]


def read_ansible_inventory(
    path: str, *, default_ports: PortSpec, stdin: TextIO | None = None
) -> Iterator[TargetSpec | InventoryError]:
    """Read a static Ansible inventory, INI or YAML (see `ansible_source_kind`)."""
    data = _read(path, stdin)
    if isinstance(data, InventoryError):
        yield data
        return
    head = data[:4096].decode("utf-8", errors="replace")
    kind = ansible_source_kind(path, head)
    yield from parse_ansible_inventory(
        data, file=_name(path), kind=kind, default_ports=default_ports
    )


def read_ansible_json(
    path: str, *, default_ports: PortSpec, stdin: TextIO | None = None
) -> Iterator[TargetSpec | InventoryError]:
    """Read the JSON that `ansible-inventory -i SRC --list` writes (`-`: from stdin)."""
    data = _read(path, stdin)
    if isinstance(data, InventoryError):
        yield data
        return
    yield from parse_ansible_inventory(
        data, file=_name(path), kind="json", default_ports=default_ports
    )


def parse_ansible_inventory(
    data: bytes, *, file: str, kind: SourceKind, default_ports: PortSpec
) -> Iterator[TargetSpec | InventoryError]:
    """Specs for an inventory's bytes: every error first, in line order, then one spec per host.

    The whole source is read before the first spec, because a host's settings can come
    from a group declared at the end of the file.
    """
    # Imported here, not at the top: `detect_format` is imported by every scan, and
    # these (PyYAML above all) only by scans of Ansible inventories.
    from scanner.inventory.ansible.jsonsource import parse_json_inventory
    from scanner.inventory.ansible.settings import tree_specs
    from scanner.inventory.ansible.yamlsource import parse_yaml_inventory

    tree: InventoryTree
    if kind == "ini":
        tree, errors = parse_ini_inventory(data, file=file)
    elif kind == "yaml":
        tree, errors = parse_yaml_inventory(data, file=file)
    else:
        tree, errors = parse_json_inventory(data, file=file)
    specs: list[TargetSpec] = []
    for item in tree_specs(tree, default_ports=default_ports):
        if isinstance(item, InventoryError):
            errors.append(item)
        else:
            specs.append(item)
    yield from sorted(errors, key=lambda error: error.origin.line)
    yield from specs


def _read(path: str, stdin: TextIO | None) -> bytes | InventoryError:
    """The file's bytes, or why they cannot be read (an error at line 0)."""
    if path == "-":
        stream = sys.stdin if stdin is None else stdin
        binary: BinaryIO | None = getattr(stream, "buffer", None)
        return binary.read() if binary is not None else stream.read().encode()
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        return InventoryError(Origin(path, 0), f"cannot read {path}: {error.strerror or error}")


def _name(path: str) -> str:
    return STDIN_NAME if path == "-" else path
