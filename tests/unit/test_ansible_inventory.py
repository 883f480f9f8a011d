"""Ansible inventories: host ranges, variable precedence, pins, ports, labels, errors, detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.core.model import Expect, Origin, Proto
from scanner.inventory import (
    DEFAULT_PORTS,
    InventoryError,
    SpecError,
    TargetSpec,
    detect_format,
    inventory_specs,
    parse_ports,
)
from scanner.inventory.ansible import expand_host_pattern, parse_ansible_inventory
from scanner.inventory.ansible.ini import ini_value
from scanner.inventory.ansible.ranges import MAX_PATTERN_HOSTS
from scanner.inventory.ansible.settings import ports_from_value

FILE = "inv"


def read(text: str, kind: str = "ini") -> tuple[list[TargetSpec], list[InventoryError]]:
    items = list(
        parse_ansible_inventory(
            text.encode(),
            file=FILE,
            kind=kind,  # type: ignore[arg-type]
            default_ports=parse_ports("22"),
        )
    )
    specs = [item for item in items if isinstance(item, TargetSpec)]
    errors = [item for item in items if isinstance(item, InventoryError)]
    return specs, errors


def by_host(specs: list[TargetSpec]) -> dict[str, TargetSpec]:
    result: dict[str, TargetSpec] = {}
    for spec in specs:
        for _, host in spec.hosts.members():
            result[host] = spec
    return result


def ports_of(spec: TargetSpec) -> str:
    return str(spec.ports)


def error_lines(errors: list[InventoryError]) -> list[int]:
    return [error.origin.line for error in errors]


# -- host patterns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web1.example.com", ["web1.example.com"]),
        ("web[01:03].example.com", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("web[1:3]", ["web1", "web2", "web3"]),
        ("web[8:10]", ["web8", "web9", "web10"]),
        ("db-[a:c].example.com", ["db-a.example.com", "db-b.example.com", "db-c.example.com"]),
        ("h[0:10:5]", ["h0", "h5", "h10"]),
        ("h[a:e:2]", ["ha", "hc", "he"]),
        ("h[:2]", ["h0", "h1", "h2"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),  # leftmost range varies slowest
        ("10.0.0.[1:3]", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        ("web1.example.com:2222", ["web1.example.com"]),  # SSH port dropped
        ("web[1:2]:2222", ["web1", "web2"]),
        ("2001:db8::1", ["2001:db8::1"]),
        ("[2001:db8::1]:22", ["2001:db8::1"]),
    ],
)
def test_host_patterns_expand_like_ansible(pattern: str, expected: list[str]) -> None:
    assert expand_host_pattern(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ("web[1:3", "unclosed"),
        ("web]1", "without"),
        ("web[3:1]", "backwards"),
        ("web[c:a]", "backwards"),
        ("web[01:100]", "one width"),
        ("web[1:5:0]", "above 0"),
        ("web[1]", "bad range"),
        ("web[1:]", "no end"),
        ("web[ab:cd]", "bad range"),
        ("web[1:2:3:4]", "bad range"),
        ("web1:", "ends in ':'"),
        ("web1:ssh", "bad SSH port"),
        (f"h[0:{MAX_PATTERN_HOSTS}]", "more than"),
        ("a[0:999]b[0:999]", "more than"),
    ],
)
def test_bad_host_patterns_say_what_is_wrong(pattern: str, complaint: str) -> None:
    with pytest.raises(SpecError, match=complaint):
        expand_host_pattern(pattern)


# -- INI values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("22", 22),
        ("22,443", [22, 443]),  # a Python tuple, as Ansible reads it
        ('[22, "53/udp"]', [22, "53/udp"]),
        ("22,U:53", "22,U:53"),
        ("https", "https"),
        ("True", True),
        ("true", "true"),
        ("'quoted'", "quoted"),
        ("1 # comment", 1),  # Python's comment rule, as in Ansible
        ("'\\d'", "\\d"),  # an invalid escape warns in Python; not an error here
    ],
)
def test_ini_values_are_typed_like_ansible(text: str, value: object) -> None:
    assert ini_value(text) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (22, "22"),
        ("22,443,U:53", "22,443,53/udp"),
        ([22, "53/udp", "https"], "22,443,53/udp"),
        ([80, "U:53", 81], "80-81,53/udp"),  # list items are read one by one
    ],
)
def test_reachscan_ports_accepts_lists_strings_and_numbers(value: object, expected: str) -> None:
    assert str(ports_from_value(value)) == expected


@pytest.mark.parametrize("value", [[], True, 2.5, None, {"port": 22}, [22, [23]], "99999"])
def test_reachscan_ports_rejects_other_values(value: object) -> None:
    with pytest.raises(SpecError):
        ports_from_value(value)


# -- INI inventories ---------------------------------------------------------------------

PRECEDENCE = """\
[all:vars]
reachscan_ports=1
[parent:children]
child
[parent:vars]
reachscan_ports=2
[child]
in-child
own-ports reachscan_ports=4
[child:vars]
reachscan_ports=3
[parent]
in-parent
[other]
lone
"""


def test_host_vars_beat_child_group_beats_parent_beats_all() -> None:
    specs, errors = read(PRECEDENCE)
    assert errors == []
    hosts = by_host(specs)
    assert {name: ports_of(spec) for name, spec in hosts.items()} == {
        "in-child": "3",
        "own-ports": "4",
        "in-parent": "2",
        "lone": "1",
    }


def test_group_priority_breaks_ties_between_groups_of_one_depth() -> None:
    text = """\
[a]
both
[b]
both
[a:vars]
reachscan_ports=1
{priority}
[b:vars]
reachscan_ports=2
"""
    specs, _ = read(text.format(priority=""))
    assert ports_of(by_host(specs)["both"]) == "2"  # same priority: the later name wins
    specs, _ = read(text.format(priority="ansible_group_priority=10"))
    assert ports_of(by_host(specs)["both"]) == "1"
    assert by_host(specs)["both"].labels == (("group", "a"), ("groups", "a,b"))


def test_deeper_group_wins_over_shallower_whatever_the_names() -> None:
    text = """\
[zz]
host1
[aa]
host1
[top:children]
aa
[zz:vars]
reachscan_ports=1
[aa:vars]
reachscan_ports=2
"""
    specs, errors = read(text)
    assert errors == []
    spec = by_host(specs)["host1"]
    assert ports_of(spec) == "2"  # aa is at depth 2 (all > top > aa), zz at 1
    assert spec.labels == (("group", "aa"), ("groups", "aa,top,zz"))


def test_ungrouped_hosts_get_default_ports_and_no_group_labels() -> None:
    specs, errors = read("# comment\n; another\n\nalone.example.com\n")
    assert errors == []
    (spec,) = specs
    assert spec.ports == parse_ports("22")  # the default_ports passed in
    assert spec.labels == ()
    assert spec.expect is Expect.OPEN
    assert spec.origin == Origin(FILE, 4)


def test_ungrouped_variables_apply_only_to_ungrouped_hosts() -> None:
    specs, _ = read("lone\n[web]\nweb1\n[ungrouped:vars]\nreachscan_ports=7\n")
    hosts = by_host(specs)
    assert ports_of(hosts["lone"]) == "7"
    assert ports_of(hosts["web1"]) == "22"


def test_ansible_host_address_is_pinned_and_ansible_port_ignored() -> None:
    specs, errors = read("[db]\ndb1:2222 ansible_host=192.0.2.5 ansible_port=5022\n")
    assert errors == []
    (spec,) = specs
    assert next(iter(spec.endpoints())).host == "db1"
    assert spec.pinned_address == "192.0.2.5"
    assert spec.ports == parse_ports("22")


def test_ansible_host_ipv6_is_pinned_canonically() -> None:
    specs, _ = read("db1 ansible_host=2001:DB8::5\n")
    assert specs[0].pinned_address == "2001:db8::5"


def test_ansible_host_name_is_probed_and_inventory_name_kept_as_label() -> None:
    specs, errors = read("alias ansible_host=real.example.net\n")
    assert errors == []
    (endpoint,) = list(specs[0].endpoints())
    assert endpoint.host == "real.example.net"
    assert endpoint.pinned_address is None
    assert endpoint.labels == (("inventory_hostname", "alias"),)


def test_expect_and_label_variables() -> None:
    text = """\
[db]
db1 reachscan_expect=refused reachscan_label_canary=True
[db:vars]
reachscan_label_team=data
reachscan_label_group=custom
"""
    specs, errors = read(text)
    assert errors == []
    (spec,) = specs
    assert spec.expect is Expect.REFUSED
    assert spec.labels == (
        ("canary", "true"),
        ("group", "custom"),  # an explicit label beats the derived one
        ("groups", "db"),
        ("team", "data"),
    )


def test_a_host_in_several_groups_is_one_spec() -> None:
    specs, _ = read("[a]\nh1\n[b]\nh1\nh2\n")
    assert [next(iter(spec.hosts.members()))[1] for spec in specs] == ["h1", "h2"]
    assert specs[0].origin == Origin(FILE, 2)  # where the host was first named


def test_udp_and_service_ports_reach_the_endpoints() -> None:
    specs, _ = read("ns1 reachscan_ports='U:53,T:https'\n")
    assert {(e.port, e.proto, e.service) for e in specs[0].endpoints()} == {
        (53, Proto.UDP, None),
        (443, Proto.TCP, "https"),
    }


def test_errors_carry_the_line_and_the_rest_is_still_read() -> None:
    text = """\
[web]
web[3:1].example.com
good.example.com
web9 oops
[web:oops]
ignored
[db]
db1 reachscan_expect=sometimes
[bad group]
"""
    specs, errors = read(text)
    assert error_lines(errors) == [2, 4, 5, 8, 9]
    assert "backwards" in errors[0].message
    assert "key=value" in errors[1].message
    assert "unknown section type" in errors[2].message
    assert errors[3].message.startswith("reachscan_expect: bad expectation 'sometimes'")
    assert "bad section header" in errors[4].message
    assert list(by_host(specs)) == ["good.example.com"]  # web9 and db1 are not probed


def test_yaml_errors_name_the_editors_line_after_a_yaml_only_line_break() -> None:
    """U+2028 is a line break to YAML, not to an editor: the error is on line 5."""
    text = 'all:\n  vars:\n    note: "a\u2028b"\n  hosts:\n    db1: {reachscan_expect: sometimes}\n'
    _, errors = read(text, kind="yaml")
    assert error_lines(errors) == [5]


def test_a_bad_group_variable_is_reported_once_and_none_of_its_hosts_probed() -> None:
    text = "[web]\nweb[1:50]\n[web:vars]\nreachscan_ports=80,bogus\n[db]\ndb1\n"
    specs, errors = read(text)
    assert len(errors) == 1
    assert errors[0].origin == Origin(FILE, 4)
    assert errors[0].message.startswith("reachscan_ports: ")
    assert "'bogus'" in errors[0].message
    assert list(by_host(specs)) == ["db1"]


def test_a_malformed_vars_line_keeps_the_groups_hosts_from_being_probed() -> None:
    specs, errors = read("[web]\nweb1\n[web:vars]\nno equals sign here\n[db]\ndb1\n")
    assert error_lines(errors) == [4]
    assert list(by_host(specs)) == ["db1"]


def test_undeclared_groups_are_errors_as_in_ansible() -> None:
    text = "[prod:children]\nwebb\n[typo:vars]\nx=1\n[web]\nweb1\n"
    specs, errors = read(text)
    assert error_lines(errors) == [2, 3]
    assert "'webb'" in errors[0].message
    assert "[typo:vars]" in errors[1].message
    assert list(by_host(specs)) == ["web1"]


def test_a_child_declared_after_its_parent_is_fine() -> None:
    specs, errors = read("[prod:children]\nweb\n[prod:vars]\nreachscan_ports=9\n[web]\nweb1\n")
    assert errors == []
    assert ports_of(by_host(specs)["web1"]) == "9"


def test_a_children_loop_is_reported_and_its_hosts_not_probed() -> None:
    text = "[a:children]\nb\n[b:children]\na\n[a]\nh1\n[c]\nh2\n"
    specs, errors = read(text)
    assert len(errors) == 1
    assert "a, b" in errors[0].message
    assert list(by_host(specs)) == ["h2"]


def test_templates_and_bad_host_names_are_errors() -> None:
    text = "h1 ansible_host='{{ lookup(\"x\") }}'\nbad_name!\nh3 reachscan_label_x-y=1\n"
    specs, errors = read(text)
    assert error_lines(errors) == [1, 2, 3]
    assert "Jinja template" in errors[0].message
    assert "not a valid host name" in errors[1].message
    assert "label name 'x-y'" in errors[2].message
    assert specs == []


def test_invalid_utf8_is_one_error_with_its_line() -> None:
    items = list(
        parse_ansible_inventory(b"ok\n\xff\n", file=FILE, kind="ini", default_ports=DEFAULT_PORTS)
    )
    assert [str(item) for item in items] == [
        f"{FILE}:2: invalid UTF-8 (byte 0xff); save the file as UTF-8"
    ]


# -- YAML inventories ---------------------------------------------------------------------

YAML_FLEET = """\
all:
  vars:
    reachscan_ports: [22]
  hosts:
    bastion:
      ansible_host: 192.0.2.1
  children:
    web:
      vars: {reachscan_ports: "80,443", reachscan_label_canary: yes}
      hosts:
        web[01:02].example.com:
        web02.example.com: {reachscan_ports: 8443}
    db:
      hosts: db1.example.com
      vars:
        secret: !vault |
          $ANSIBLE_VAULT;1.1;AES256
          3132
        note: !unsafe '{{ not a template to us }}'
"""


def test_yaml_inventory_with_the_same_semantics() -> None:
    specs, errors = read(YAML_FLEET, "yaml")
    assert errors == []
    hosts = by_host(specs)
    assert {name: ports_of(spec) for name, spec in hosts.items()} == {
        "bastion": "22",
        "web01.example.com": "80,443",
        "web02.example.com": "8443",
        "db1.example.com": "22",
    }
    assert hosts["bastion"].pinned_address == "192.0.2.1"
    assert ("canary", "true") in hosts["web01.example.com"].labels  # YAML 1.1: yes is true
    assert hosts["web01.example.com"].origin == Origin(FILE, 11)


def test_yaml_errors_point_at_their_nodes() -> None:
    text = """\
all:
  children:
    web:
      hosts:
        web[1:0]:
        ok1:
    db:
      host:
        db1:
    dns:
      vars:
        reachscan_ports: [53, nonsense]
      hosts: {ns1: }
    mail:
      hosts:
        1:
        ok2:
"""
    specs, errors = read(text, "yaml")
    assert error_lines(errors) == [5, 8, 12, 16]
    assert "backwards" in errors[0].message
    assert "unknown key 'host'" in errors[1].message
    assert errors[2].message.startswith("reachscan_ports: unknown service name 'nonsense'")
    assert "put it in quotes" in errors[3].message
    assert sorted(by_host(specs)) == ["ok1", "ok2"]


def test_yaml_vault_value_is_an_error_only_when_reachscan_needs_it() -> None:
    text = """\
all:
  hosts:
    h1:
      reachscan_ports: !vault |
        $ANSIBLE_VAULT;1.1;AES256
        3132
"""
    specs, errors = read(text, "yaml")
    assert error_lines(errors) == [4]
    assert "cannot read" in errors[0].message
    assert specs == []


def test_yaml_plugin_configuration_is_refused_with_advice() -> None:
    _, errors = read("plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", "yaml")
    assert len(errors) == 1
    assert "ansible-inventory" in errors[0].message


def test_yaml_syntax_error_has_a_line() -> None:
    _, errors = read("all:\n  hosts:\n    - [unclosed\n", "yaml")
    assert len(errors) == 1
    assert errors[0].origin.line >= 3
    assert errors[0].message.startswith("YAML syntax error")


def test_yaml_merge_keys_and_anchors() -> None:
    text = """\
all:
  children:
    a:
      vars: &common {reachscan_ports: 25, reachscan_expect: refused}
      hosts: {h1: }
    b:
      vars:
        <<: *common
        reachscan_expect: open
      hosts: {h2: }
"""
    specs, errors = read(text, "yaml")
    assert errors == []
    hosts = by_host(specs)
    assert (ports_of(hosts["h1"]), hosts["h1"].expect) == ("25", Expect.REFUSED)
    assert (ports_of(hosts["h2"]), hosts["h2"].expect) == ("25", Expect.OPEN)


# -- JSON (ansible-inventory --list) ------------------------------------------------------


def test_json_list_output() -> None:
    document = {
        "_meta": {
            "hostvars": {
                "web1": {"ansible_host": "192.0.2.7", "reachscan_ports": [80, 443]},
                "db1": {"reachscan_expect": "refused", "note": {"__ansible_unsafe": "{{x}}"}},
                "vaulted": {"reachscan_label_x": {"__ansible_vault": "$ANSIBLE_VAULT..."}},
            }
        },
        "all": {"children": ["ungrouped", "web", "db"]},
        "web": {"hosts": ["web1"]},
        "db": {"hosts": ["db1"], "vars": {"reachscan_ports": "5432"}},
        "ungrouped": {"hosts": ["lone", "vaulted"]},
    }
    text = json.dumps(document, indent=4)
    specs, errors = read(text, "json")
    hosts = by_host(specs)
    assert sorted(hosts) == ["db1", "lone", "web1"]
    assert hosts["web1"].pinned_address == "192.0.2.7"
    assert ports_of(hosts["web1"]) == "80,443"
    assert (ports_of(hosts["db1"]), hosts["db1"].expect) == ("5432", Expect.REFUSED)
    assert ports_of(hosts["lone"]) == "22"
    assert hosts["db1"].labels == (("group", "db"), ("groups", "db"))
    assert len(errors) == 1
    assert "cannot read an !vault value" in errors[0].message
    vaulted_line = 1 + next(
        number for number, line in enumerate(text.splitlines()) if '"vaulted": {' in line
    )
    assert errors[0].origin == Origin(FILE, vaulted_line)


def test_json_script_short_form_and_structure_errors() -> None:
    specs, errors = read('{"web": ["w1", "w2"], "db": {"hosts": "db1"}, "x": 3}', "json")
    assert sorted(by_host(specs)) == ["w1", "w2"]
    assert [error.message for error in errors] == [
        "'hosts' of group 'db' must be a list of names",
        "group 'x' must be an object",
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [('{\n  "all": [\n', 3), ("[1, 2]", 1)],
)
def test_json_that_is_not_an_inventory(text: str, line: int) -> None:
    specs, errors = read(text, "json")
    assert specs == []
    assert error_lines(errors) == [line]


# -- format detection and the one door ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("hosts.ini", "web1\n", "ansible"),
        ("hosts", "# fleet\n\n[web]\nweb1\n", "ansible"),
        ("hosts", "; fleet\n[web:children] # comment\n", "ansible"),
        ("targets.txt", "[::1]:80\n", "specs"),
        ("targets.txt", "[2001:db8::1]\n", "specs"),
        ("targets.txt", "10.0.0.1:22\n", "specs"),
        ("rendered.json", '{"_meta": {"hostvars": {}}, "all": {}}', "ansible-json"),
        ("rendered", '\n {"all": {"children": []}}', "ansible-json"),
        ("other.json", '{"hosts": []}', "specs"),
        ("inv.yaml", "all:\n  hosts:\n    h1:\n", "ansible"),
        ("inv.yml", "# c\n'all':\n  children: {}\n", "ansible"),
        ("inv.yaml", "hosts:\n  - host: a\n", "yaml"),
        ("inv.yaml", "defaults: {ports: [22]}\nall: 1\n", "yaml"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert detect_format(str(path)) == expected


def test_detect_format_of_stdin_and_missing_files() -> None:
    assert detect_format("-") == "specs"
    assert detect_format("/nonexistent/inventory.ini") == "specs"


def test_inventory_specs_dispatches_on_format(tmp_path: Path) -> None:
    ini = tmp_path / "hosts"
    ini.write_text("[web]\nweb1 reachscan_ports=80\n")
    (spec,) = list(inventory_specs(str(ini)))
    assert isinstance(spec, TargetSpec)
    assert spec.labels == (("group", "web"), ("groups", "web"))
    yaml_as_ansible = tmp_path / "fleet"
    yaml_as_ansible.write_text("webservers:\n  hosts:\n    w1:\n")
    (spec,) = list(inventory_specs(str(yaml_as_ansible), fmt="ansible"))
    assert isinstance(spec, TargetSpec)
    assert spec.labels == (("group", "webservers"), ("groups", "webservers"))
    assert spec.ports == DEFAULT_PORTS
    # forcing specs reads the same file as target specs, which it is not
    assert all(isinstance(item, InventoryError) for item in inventory_specs(str(ini), fmt="specs"))
    with pytest.raises(ValueError, match="unknown inventory format"):
        list(inventory_specs(str(ini), fmt="toml"))


def test_ansible_json_from_stdin() -> None:
    import io

    stdin = io.TextIOWrapper(io.BytesIO(b'{"web": {"hosts": ["w1"]}}'))
    items = list(inventory_specs("-", fmt="ansible-json", stdin=stdin))
    assert [type(item) for item in items] == [TargetSpec]
    assert items[0].origin == Origin("<stdin>", 1)


def test_unreadable_ansible_file_is_one_error() -> None:
    items = list(inventory_specs("/nonexistent/hosts.ini", fmt="ansible"))
    assert len(items) == 1
    assert isinstance(items[0], InventoryError)
    assert items[0].origin == Origin("/nonexistent/hosts.ini", 0)
