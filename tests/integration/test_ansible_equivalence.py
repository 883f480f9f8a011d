"""reachscan reads an Ansible inventory exactly as Ansible does.

For each sample inventory (tests/data/ansible/), `ansible-inventory --list` renders it
(with group variables folded into hosts, and with `--export`, kept in the groups); the
JSON reader must then give the same endpoints as the static reader of the file itself,
labels included, and the same hosts, pins, ports, protocols and expectations as the
native reachscan YAML that spells the fleet out host by host. ansible-inventory reads
static files only: nothing is resolved or sent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.core.model import Expect, Labels, Proto
from scanner.inventory import DEFAULT_PORTS, InventoryError, TargetSpec, inventory_specs
from scanner.inventory.ansible import parse_ansible_inventory

DATA = Path(__file__).parent.parent / "data" / "ansible"
INVENTORIES = ["fleet.ini", "fleet.yaml"]

Row = tuple[str, str | None, int, Proto, Expect | None, Labels]


def ansible_inventory_command() -> str | None:
    """The venv's ansible-inventory, else one on PATH."""
    beside_python = Path(sys.executable).parent / "ansible-inventory"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("ansible-inventory")


ANSIBLE_INVENTORY = ansible_inventory_command()
needs_ansible = pytest.mark.skipif(
    ANSIBLE_INVENTORY is None,
    reason="ansible-inventory is not installed (pip install ansible-core, the 'test' extra)",
)


def render(inventory: Path, home: Path, *extra: str) -> bytes:
    """`ansible-inventory -i INVENTORY --list`, isolated from the user's Ansible setup."""
    assert ANSIBLE_INVENTORY is not None
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "LC_ALL": "C.UTF-8",
        "HOME": str(home),
        "ANSIBLE_HOME": str(home / "ansible"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_CONFIG": str(home / "none.cfg"),  # no ansible.cfg from anywhere
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",  # a file it cannot read is an error
    }
    completed = subprocess.run(
        [ANSIBLE_INVENTORY, "-i", str(inventory), "--list", *extra],
        capture_output=True,
        env=environment,
        cwd=home,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    return completed.stdout


def rows(items: list[TargetSpec | InventoryError]) -> set[Row]:
    errors = [str(item) for item in items if isinstance(item, InventoryError)]
    assert errors == []
    return {
        (e.host, e.pinned_address, e.port, e.proto, e.expect, e.labels)
        for item in items
        if isinstance(item, TargetSpec)
        for e in item.endpoints()
    }


def without_labels(found: set[Row]) -> set[tuple[object, ...]]:
    return {row[:5] for row in found}


@needs_ansible
@pytest.mark.parametrize("name", INVENTORIES)
@pytest.mark.parametrize("export", [False, True], ids=["list", "export"])
def test_static_reader_matches_ansible_inventory(name: str, export: bool, tmp_path: Path) -> None:
    inventory = DATA / name
    rendered = render(inventory, tmp_path, *(["--export"] if export else []))
    through_ansible = rows(
        list(
            parse_ansible_inventory(
                rendered, file="rendered.json", kind="json", default_ports=DEFAULT_PORTS
            )
        )
    )
    read_directly = rows(list(inventory_specs(str(inventory))))
    assert read_directly == through_ansible
    assert len(read_directly) == 20  # the sample is not trivially empty on both sides


@needs_ansible
def test_rendered_json_file_is_detected(tmp_path: Path) -> None:
    rendered = tmp_path / "fleet.json"
    rendered.write_bytes(render(DATA / "fleet.ini", tmp_path))
    assert rows(list(inventory_specs(str(rendered)))) == rows(
        list(inventory_specs(str(DATA / "fleet.ini")))
    )


@pytest.mark.parametrize("name", INVENTORIES)
def test_static_reader_matches_native_inventory(name: str) -> None:
    native = rows(list(inventory_specs(str(DATA / "fleet-native.yaml"))))
    ansible = rows(list(inventory_specs(str(DATA / name))))
    assert without_labels(ansible) == without_labels(native)


def test_group_and_label_variables_become_labels() -> None:
    found = rows(list(inventory_specs(str(DATA / "fleet.ini"))))
    web01 = {row[5] for row in found if row[0] == "web01.example.com"}
    assert web01 == {
        (
            ("env", "prod"),
            ("group", "web"),
            ("groups", "dns,prod,web"),
            ("owner", "platform"),
            ("tier", "frontend"),
        )
    }
    legacy = {row[5] for row in found if row[0] == "legacy.example.net"}
    assert legacy == {(("inventory_hostname", "legacy"), ("owner", "platform"))}
