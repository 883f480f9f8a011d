"""What reachscan reads from an Ansible host's variables: address, ports, expectation, labels.

- `ansible_host` is where Ansible connects, so it is what is probed. An IP address is
  pinned (the endpoint keeps the inventory hostname, resolution is skipped, as for
  `address:` in reachscan's own YAML); a DNS name becomes the host to resolve, and the
  inventory hostname is kept in the label `inventory_hostname`.
- `ansible_port` is the SSH port Ansible uses; it says nothing about what to check and is
  ignored. The ports to check are `reachscan_ports` - a list (`[22, "53/udp", https]`,
  each item read alone) or a string in target-spec syntax (`"22,443,U:53"`) - or else the
  command line's `--ports` default.
- `reachscan_expect` is the expectation (default open).
- Labels: `group` (the most specific group, the one whose variables win), `groups` (all
  of them, sorted, comma-separated), then every `reachscan_label_NAME` as `NAME`, which
  overrides the first two if it is called `group` or `groups`.

Templates are not evaluated: a `{{ ... }}` in a variable reachscan uses is an error, not
a host name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from scanner.core.errors import InventoryError, SpecError
from scanner.core.hosts import HostPattern, SingleHost, parse_host
from scanner.core.model import Expect, Labels
from scanner.core.ports import PortSpec
from scanner.core.specs import TargetSpec, parse_ports
from scanner.inventory.ansible.tree import InventoryTree, MergedHost, OpaqueValue, Variable

HOST_VARIABLE = "ansible_host"
PORTS_VARIABLE = "reachscan_ports"
EXPECT_VARIABLE = "reachscan_expect"
LABEL_PREFIX = "reachscan_label_"
INVENTORY_NAME_LABEL = "inventory_hostname"

_LABEL_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_T = TypeVar("_T")
_D = TypeVar("_D")
_PORTS_HELP = 'write a list like [22, "53/udp", https] or a string like "22,443,U:53"'


def tree_specs(
    tree: InventoryTree, *, default_ports: PortSpec
) -> Iterator[TargetSpec | InventoryError]:
    """One spec per host of the tree, with each distinct error reported once.

    A bad `reachscan_ports` in a group's variables is one mistake, however many hosts
    inherit it: it is reported at the line where it was written, and none of those hosts
    is probed.
    """
    reported: set[InventoryError] = set()
    for item in tree.merged_hosts():
        errors = [item] if isinstance(item, InventoryError) else []
        spec = None
        if isinstance(item, MergedHost):
            spec = host_spec(item, default_ports=default_ports, errors=errors)
        for error in errors:
            if error not in reported:
                reported.add(error)
                yield error
        if spec is not None:
            yield spec


def host_spec(
    host: MergedHost, *, default_ports: PortSpec, errors: list[InventoryError]
) -> TargetSpec | None:
    """The spec for one host, or None (with the reasons appended to `errors`)."""
    errors_before = len(errors)
    variables = host.variables
    ports = _read(variables, PORTS_VARIABLE, ports_from_value, default_ports, errors)
    expect = _read(variables, EXPECT_VARIABLE, expect_from_value, Expect.OPEN, errors)
    address = _read(variables, HOST_VARIABLE, _text, None, errors)
    labels = dict(group_labels(host.groups))
    for key in sorted(variables):
        if not key.startswith(LABEL_PREFIX):
            continue
        name = key.removeprefix(LABEL_PREFIX)
        if not _LABEL_KEY.match(name):
            message = f"{key}: label name {name!r} must be letters, digits and _"
            errors.append(InventoryError(variables[key].origin, message))
            continue
        text = _read(variables, key, label_text, None, errors)
        if text is not None:
            labels[name] = text
    try:
        hosts, pinned, inventory_label = target(host.name, address)
    except SpecError as error:
        address_variable = variables.get(HOST_VARIABLE)
        blamed = address_variable if address is not None and pinned_by(address) is None else None
        origin = blamed.origin if blamed is not None else host.origin
        errors.append(InventoryError(origin, str(error)))
        return None
    if inventory_label is not None:
        labels[INVENTORY_NAME_LABEL] = inventory_label
    if len(errors) > errors_before or host.broken:
        return None
    return TargetSpec(hosts, ports, expect, _sorted(labels), pinned, host.origin)


def target(name: str, address: str | None) -> tuple[HostPattern, str | None, str | None]:
    """(host to record, pinned address, inventory_hostname label) for one host.

    With an IP `ansible_host` the inventory hostname is only a name for the pinned
    address; with a DNS name the name is what gets resolved.
    """
    if address is None or address == name:
        return _single_host(name), None, None
    pinned = pinned_by(address)
    if pinned is None:
        return _single_host(address), None, name
    return _single_host(name), pinned, None


def pinned_by(address: str) -> str | None:
    """The canonical IP address `ansible_host` pins, or None when it is a name."""
    try:
        return str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return None


def group_labels(groups: tuple[str, ...]) -> Labels:
    """`group` (the most specific: the last in precedence order) and `groups`."""
    if not groups:
        return ()
    return (("group", groups[-1]), ("groups", ",".join(sorted(groups))))


def ports_from_value(value: object) -> PortSpec:
    """`reachscan_ports` as a PortSpec: an int, a target-spec string, or a list of those."""
    if isinstance(value, list | tuple):
        if not value:
            raise SpecError(f"no ports given; {_PORTS_HELP}")
        spec = PortSpec.of(())
        for item in value:
            spec = spec.union(parse_ports(_port_item_text(item)))
        return spec
    return parse_ports(_port_item_text(value))


def expect_from_value(value: object) -> Expect:
    text = _text(value).strip().lower()
    try:
        return Expect(text)
    except ValueError:
        allowed = ", ".join(expect.value for expect in Expect)
        raise SpecError(f"bad expectation {text!r}; write one of {allowed}") from None


def label_text(value: object) -> str:
    """A label's value as text: strings as written, true/false, numbers as Python prints."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _text(value)


def _read(
    variables: Mapping[str, Variable],
    key: str,
    convert: Callable[[object], _T],
    default: _D,
    errors: list[InventoryError],
) -> _T | _D:
    """A variable converted, or `default` when it is unset or wrong (errors get why)."""
    variable = variables.get(key)
    if variable is None:
        return default
    try:
        return convert(variable.value)
    except SpecError as error:
        errors.append(InventoryError(variable.origin, f"{key}: {error}"))
        return default


def _port_item_text(value: object) -> str:
    if isinstance(value, OpaqueValue):
        return _text(value)  # says why it cannot be read
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(f"{_describe(value)} is not a port; {_PORTS_HELP}")
    return _text(value) if isinstance(value, str) else str(value)


def _text(value: object) -> str:
    """A string variable's text; a template, a secret or a structure is an error."""
    if isinstance(value, OpaqueValue):
        raise SpecError(f"cannot read {value.description}; write the value in the clear")
    if not isinstance(value, str):
        raise SpecError(f"expected text, got {_describe(value)}")
    if "{{" in value or "{%" in value:
        raise SpecError(
            f"{value!r} is a Jinja template; reachscan does not evaluate templates,"
            " write the value itself"
        )
    return value


def _single_host(text: str) -> SingleHost:
    hosts = parse_host(text)
    if not isinstance(hosts, SingleHost):
        raise SpecError(f"{text!r} is not one host; an Ansible host is one name or address")
    return hosts


def _describe(value: object) -> str:
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "an empty value"
    return repr(value)


def _sorted(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))
