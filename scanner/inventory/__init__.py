"""Inventories in, endpoints out: the one door the rest of reachscan uses.

Reads `-t` specs, plain-text spec files (or stdin), YAML inventories and Ansible
inventories (INI, YAML, `ansible-inventory --list` JSON), and turns them
into de-duplicated `Endpoint`s interleaved with `InventoryError`s in input order. Nothing
here raises for bad input: every problem is an error item with FILE:LINE, so the caller
can report all of them and decide whether to scan at all.

Two layers: `*_specs` functions give lazy `TargetSpec`s (hosts x ports rectangles), and
`iter_unique` flattens any number of spec streams into unique endpoints; to de-duplicate
`-t` arguments and files together, chain their spec streams into one `iter_unique`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TextIO

from scanner.core.errors import InventoryError, SpecError
from scanner.core.model import Endpoint, Expect, Origin
from scanner.core.ports import PortSpec
from scanner.core.services import DEFAULT_PORTS
from scanner.core.specs import TargetSpec, parse_ports, parse_target_spec
from scanner.inventory.ansible.detect import INVENTORY_FORMATS, detect_format
from scanner.inventory.dedup import Deduplicator, iter_unique
from scanner.inventory.textfile import read_text_inventory

__all__ = [
    "COMMAND_LINE",
    "DEFAULT_PORTS",
    "INVENTORY_FORMATS",
    "Deduplicator",
    "InventoryError",
    "InventoryItem",
    "PortSpec",
    "SpecError",
    "TargetSpec",
    "command_line_specs",
    "command_line_targets",
    "detect_format",
    "inventory_specs",
    "iter_unique",
    "parse_ports",
    "parse_target_spec",
    "read_inventory",
]

COMMAND_LINE = "<command line>"

InventoryItem = Endpoint | InventoryError
"""What the readers yield: an endpoint to probe, or a problem to report."""


def read_inventory(
    path: str,
    *,
    fmt: str = "auto",
    stdin: TextIO | None = None,
    default_ports: PortSpec = DEFAULT_PORTS,
) -> Iterator[InventoryItem]:
    """The unique endpoints of the inventory at `path`, with its errors, in file order.

    See `inventory_specs` for how the file is read.
    """
    return iter_unique(inventory_specs(path, fmt=fmt, stdin=stdin, default_ports=default_ports))


def inventory_specs(
    path: str,
    *,
    fmt: str = "auto",
    stdin: TextIO | None = None,
    default_ports: PortSpec = DEFAULT_PORTS,
) -> Iterator[TargetSpec | InventoryError]:
    """The specs of the inventory at `path`, read as `fmt` (one of INVENTORY_FORMATS).

    `auto` picks by name and content (`detect_format`): reachscan YAML for `.yaml`/`.yml`,
    Ansible INI/YAML/JSON where the file looks like one, else one spec a line. `-` reads
    `stdin` (default sys.stdin). Every entry of an inventory file expects `open` unless it
    says otherwise: an inventory is a statement of what should be reachable.
    `default_ports` apply to text specs without ports and Ansible hosts without
    `reachscan_ports`; reachscan YAML entries must name their ports (or inherit them from
    the file's defaults), so the file alone says what it checks. An unreadable file is
    one InventoryError at line 0.
    """
    # The YAML and Ansible readers (and PyYAML) are imported when a file needs them: a
    # scan of -t specs or a text inventory starts faster without them.
    chosen = detect_format(path) if fmt == "auto" else fmt
    if chosen == "yaml":
        from scanner.inventory.yamlfile import read_yaml_inventory

        return read_yaml_inventory(path)
    if chosen == "ansible":
        from scanner.inventory.ansible import read_ansible_inventory

        return read_ansible_inventory(path, default_ports=default_ports, stdin=stdin)
    if chosen == "ansible-json":
        from scanner.inventory.ansible import read_ansible_json

        return read_ansible_json(path, default_ports=default_ports, stdin=stdin)
    if chosen == "specs":
        return read_text_inventory(path, default_ports=default_ports, stdin=stdin)
    raise ValueError(f"unknown inventory format {fmt!r}; expected one of {INVENTORY_FORMATS}")


def command_line_targets(
    specs: Sequence[str], *, default_ports: PortSpec, expect: Expect | None
) -> Iterator[InventoryItem]:
    """The unique endpoints of `-t` specs, with an error for each spec that is wrong."""
    return iter_unique(command_line_specs(specs, default_ports=default_ports, expect=expect))


def command_line_specs(
    specs: Sequence[str], *, default_ports: PortSpec, expect: Expect | None
) -> Iterator[TargetSpec | InventoryError]:
    """Parse `-t` specs; the origin is `<command line>` and the spec's 1-based position."""
    for position, text in enumerate(specs, start=1):
        origin = Origin(COMMAND_LINE, position)
        try:
            yield parse_target_spec(text, default_ports=default_ports, expect=expect, origin=origin)
        except SpecError as error:
            yield InventoryError(origin, str(error))
