"""YAML inventories: the full shape, inheritance, and every error at its FILE:LINE."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from scanner.core.model import Endpoint, Expect, Origin, Proto
from scanner.inventory import InventoryError, TargetSpec, read_inventory, yamlnodes
from scanner.inventory.yamlfile import parse_yaml_inventory

TCP, UDP = Proto.TCP, Proto.UDP
FILE = "inv.yaml"


def parse(text: str) -> list[TargetSpec | InventoryError]:
    return list(parse_yaml_inventory(textwrap.dedent(text).encode(), file=FILE))


def errors(text: str) -> list[str]:
    """Each error as `LINE: message`."""
    return [
        f"{item.origin.line}: {item.message}"
        for item in parse(text)
        if isinstance(item, InventoryError)
    ]


def endpoints(text: str) -> list[Endpoint]:
    result: list[Endpoint] = []
    for item in parse(text):
        assert isinstance(item, TargetSpec), str(item)
        result.extend(item.endpoints())
    return result


def brief(text: str) -> list[tuple[str, int, str, str | None]]:
    """(host, port, proto, expect) of every endpoint."""
    return [
        (e.host, e.port, str(e.proto), None if e.expect is None else str(e.expect))
        for e in endpoints(text)
    ]


FULL_EXAMPLE = """\
defaults:                 # optional, applies to every host
  ports: [22]
  expect: open            # open | refused | filtered | closed
  labels: {env: prod}
groups:                   # optional
  - name: web             # becomes label group=web
    labels: {role: frontend}
    ports: [80, 443]      # group defaults (override `defaults`)
    expect: open
    hosts:
      - host: web1.example.com
      - web2.example.com  # shorthand: a bare string is a host with the group's defaults
hosts:
  - host: db1.example.com     # a name or an IP literal (required)
    address: 10.0.0.5         # optional: the pinned address
    ports: [5432, "53/udp", https, {port: 23, expect: refused}]
    expect: open              # optional; default open
    labels: {team: data}      # optional; merged over group and defaults
  - host: 10.1.0.0/31
"""


def test_the_full_example() -> None:
    web_labels = (("env", "prod"), ("group", "web"), ("role", "frontend"))
    db_labels = (("env", "prod"), ("team", "data"))
    open_ = Expect.OPEN

    def at(line: int) -> Origin:
        return Origin(FILE, line)

    assert endpoints(FULL_EXAMPLE) == [
        Endpoint("web1.example.com", 80, TCP, open_, web_labels, origin=at(11)),
        Endpoint("web1.example.com", 443, TCP, open_, web_labels, origin=at(11)),
        Endpoint("web2.example.com", 80, TCP, open_, web_labels, origin=at(12)),
        Endpoint("web2.example.com", 443, TCP, open_, web_labels, origin=at(12)),
        Endpoint("db1.example.com", 443, TCP, open_, db_labels, "10.0.0.5", "https", at(14)),
        Endpoint("db1.example.com", 5432, TCP, open_, db_labels, "10.0.0.5", None, at(14)),
        Endpoint("db1.example.com", 53, UDP, open_, db_labels, "10.0.0.5", None, at(14)),
        Endpoint("db1.example.com", 23, TCP, Expect.REFUSED, db_labels, "10.0.0.5", None, at(14)),
        Endpoint("10.1.0.0", 22, TCP, open_, (("env", "prod"),), origin=at(19)),
        Endpoint("10.1.0.1", 22, TCP, open_, (("env", "prod"),), origin=at(19)),
    ]


def test_read_inventory_dispatches_on_the_suffix(tmp_path: Path) -> None:
    for name in ("inventory.yaml", "inventory.YML"):
        path = tmp_path / name
        path.write_text(FULL_EXAMPLE)
        result = list(read_inventory(str(path)))
        assert len(result) == 10
        assert all(isinstance(item, Endpoint) for item in result)
        assert result[0].origin == Origin(str(path), 11)


def test_missing_yaml_file_is_one_error(tmp_path: Path) -> None:
    path = str(tmp_path / "gone.yml")
    assert [str(item) for item in read_inventory(path)] == [
        f"{path}:0: cannot read {path}: No such file or directory"
    ]


def test_labels_merge_defaults_then_group_then_host() -> None:
    result = endpoints(
        """
        defaults:
          ports: [22]
          labels: {env: prod, team: ops, tier: "1"}
        groups:
          - name: db
            labels: {team: data, zone: a}
            hosts:
              - host: pg1
                labels: {zone: b, owner: ann}
        """
    )
    assert [e.labels for e in result] == [
        (
            ("env", "prod"),
            ("group", "db"),
            ("owner", "ann"),
            ("team", "data"),
            ("tier", "1"),
            ("zone", "b"),
        )
    ]


def test_label_values_are_the_text_as_written() -> None:
    result = endpoints("hosts: [{host: a, ports: [1], labels: {n: 01, b: yes, f: 1.50}}]")
    assert result[0].labels == (("b", "yes"), ("f", "1.50"), ("n", "01"))


def test_inheritance_of_ports_and_expect() -> None:
    text = """
        defaults: {ports: [22], expect: filtered}
        groups:
          - name: g
            ports: [80]
            hosts: [a, {host: b, ports: [81]}, {host: c, expect: refused}]
        hosts:
          - d
          - {host: e, expect: closed, ports: [1, {port: 2, expect: open}]}
    """
    assert brief(text) == [
        ("a", 80, "tcp", "filtered"),
        ("b", 81, "tcp", "filtered"),
        ("c", 80, "tcp", "refused"),
        ("d", 22, "tcp", "filtered"),
        ("e", 1, "tcp", "closed"),
        ("e", 2, "tcp", "open"),
    ]


def test_port_item_forms() -> None:
    text = """
        hosts:
          - host: a
            ports: [1, "2/tcp", "3/udp", "4-5", dns, "dns/tcp", "U:161,T:7",
                    {port: 8, proto: udp}, {port: ntp}, {port: "9/udp"}]
    """
    assert {(port, proto) for _, port, proto, _ in brief(text)} == {
        (1, "tcp"), (2, "tcp"), (3, "udp"), (4, "tcp"), (5, "tcp"), (53, "udp"),
        (53, "tcp"), (161, "udp"), (7, "tcp"), (8, "udp"), (123, "udp"), (9, "udp"),
    }  # fmt: skip


def test_a_single_port_scalar_is_accepted() -> None:
    assert brief("hosts: [{host: a, ports: 443}]") == [("a", 443, "tcp", "open")]


def test_hosts_may_be_blocks_ranges_and_ipv6() -> None:
    text = """
        hosts:
          - {host: 10.0.0.0/30, ports: [1]}
          - {host: 10.0.1.1-2, ports: [1]}
          - {host: "[2001:DB8::1]", ports: [1]}
          - {host: "2001:db8::/127", ports: [1]}
    """
    assert [host for host, *_ in brief(text)] == [
        "10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1", "10.0.1.2",
        "2001:db8::1", "2001:db8::", "2001:db8::1",
    ]  # fmt: skip


def test_pinned_address_is_canonical() -> None:
    result = endpoints("hosts: [{host: a, address: '2001:DB8::5', ports: [1]}]")
    assert result[0].pinned_address == "2001:db8::5"


def test_anchors_aliases_and_merge_keys() -> None:
    text = """
        x-common: &common {ports: [22, 80]}
        hosts:
          - {<<: *common, host: a}
          - {<<: *common, host: b, ports: [443]}
          - <<: [{expect: refused}, {expect: open, labels: {k: v}}]
            host: c
            ports: [1]
    """
    # `x-common` is not a known top-level key, so it must be reported; use it via defaults
    assert errors(text) == [
        "2: unknown key 'x-common' in the inventory; allowed: defaults, groups, hosts"
    ]
    text = text.replace("x-common: &common", "defaults: &common")
    assert brief(text) == [
        ("a", 22, "tcp", "open"),
        ("a", 80, "tcp", "open"),
        ("b", 443, "tcp", "open"),
        ("c", 1, "tcp", "refused"),
    ]
    assert endpoints(text)[-1].labels == (("k", "v"),)


def test_several_documents_and_empty_ones() -> None:
    assert brief("hosts: [{host: a, ports: [1]}]\n---\n---\nhosts: [{host: b, ports: [2]}]") == [
        ("a", 1, "tcp", "open"),
        ("b", 2, "tcp", "open"),
    ]
    assert parse("") == []
    assert parse("# nothing yet\nhosts:\ngroups:\n") == []


def test_one_spec_per_expectation_for_dedup() -> None:
    specs = parse("hosts: [{host: a, ports: [1, 2, {port: 3, expect: refused}, 4]}]")
    assert [(str(s.ports), s.expect) for s in specs if isinstance(s, TargetSpec)] == [
        ("1-2,4", Expect.OPEN),
        ("3", Expect.REFUSED),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """
            hosts:
              - host: a
                prots: [1]
            """,
            [
                "3: no ports: give ports here or in defaults",
                "4: unknown key 'prots' in a host entry;"
                " allowed: host, address, ports, expect, labels",
            ],
            id="unknown-host-key",
        ),
        pytest.param(
            "defaults: {ports: [1], colour: red}\n",
            ["1: unknown key 'colour' in defaults; allowed: ports, expect, labels"],
            id="unknown-defaults-key",
        ),
        pytest.param(
            "groups: [{name: g, host: a}]\n",
            ["1: unknown key 'host' in a group; allowed: name, labels, ports, expect, hosts"],
            id="unknown-group-key",
        ),
        pytest.param(
            "hosts: [{host: a, ports: [{port: 1, protocol: udp}]}]\n",
            ["1: unknown key 'protocol' in a port entry; allowed: port, proto, expect, service"],
            id="unknown-port-key",
        ),
        pytest.param(
            "hosts:\n  - host: a\n    ports:\n"
            "      - 0\n      - 65536\n      - -1\n      - 80-20\n",
            [
                "4: port 0 is out of range (1-65535)",
                "5: port 65536 is out of range (1-65535)",
                "6: bad port item '-1'; write N, N-M, N/udp, a service name,"
                " or T:/U: before a list",
                "7: port range 80-20 runs backwards; write 20-80",
            ],
            id="bad-ports",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [0x50]\n",
            [
                "3: bad port item '0x50'; write N, N-M, N/udp, a service name,"
                " or T:/U: before a list"
            ],
            id="no-yaml-int-guessing",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [xyz]\n",
            ["3: unknown service name 'xyz'; write a port number"],
            id="unknown-service",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [{port: 1, proto: sctp}]\n",
            ["3: bad proto 'sctp'; write tcp or udp"],
            id="bad-proto",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [{port: 53/udp, proto: tcp}]\n",
            ["3: '53/udp' contradicts the tcp prefix before it"],
            id="contradicting-proto",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [{proto: tcp}]\n",
            ["3: missing 'port' in a port entry"],
            id="port-entry-without-port",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [1]\n  expect: maybe\n",
            ["4: bad expect 'maybe'; write one of open, refused, filtered, closed, any"],
            id="bad-expect",
        ),
        pytest.param(
            "hosts:\n- ports: [1]\n  labels: {a: b}\n",
            ["2: missing 'host': every host entry needs one"],
            id="missing-host",
        ),
        pytest.param(
            "hosts:\n- host:\n  ports: [1]\n",
            ["2: 'host' needs a value"],
            id="empty-host",
        ),
        pytest.param(
            "hosts:\n- host: [a, b]\n  ports: [1]\n",
            ["2: 'host' must be a single value, not a list"],
            id="host-list",
        ),
        pytest.param(
            "hosts:\n- host: web:80\n  ports: [1]\n",
            ["2: ports go in 'ports:', not in the host: write 'web'"],
            id="ports-inside-host",
        ),
        pytest.param(
            "hosts:\n- host: 10.0.0.0/33\n  ports: [1]\n",
            ["2: prefix length 33 is out of range for IPv4 (0-32)"],
            id="bad-cidr",
        ),
        pytest.param(
            "hosts:\n- host: a\n  address: db.example\n  ports: [1]\n",
            ["3: 'address' must be an IP address, not 'db.example'"],
            id="address-not-ip",
        ),
        pytest.param(
            "hosts:\n- host: 10.0.0.0/30\n  address: 10.0.0.1\n  ports: [1]\n",
            ["2: 'address' pins one host; it cannot be used with a block or range"],
            id="address-with-block",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: {http: 80}\n",
            [
                "3: unknown key 'http' in a port entry; allowed: port, proto, expect, service",
                "3: missing 'port' in a port entry",
            ],
            id="ports-mapping",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: []\n",
            ["3: 'ports' is empty: list at least one port"],
            id="ports-empty",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [1]\n  labels: [a, b]\n",
            ["4: 'labels' must be a mapping of name: value"],
            id="labels-list",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [1]\n  labels: {bad key: 1, 9lives: 2, ok: [1], e: }\n",
            [
                "4: bad label name 'bad key': use letters, digits and _",
                "4: bad label name '9lives': use letters, digits and _",
                "4: label 'ok' must be a single value, not a list",
                "4: label 'e' needs a value",
            ],
            id="bad-labels",
        ),
        pytest.param(
            "hosts:\n- host: a\n  expect: [open]\n  ports: [1]\n",
            ["3: 'expect' must be a single value, not a list"],
            id="expect-list",
        ),
        pytest.param(
            "hosts: {host: a}\n",
            ["1: 'hosts' must be a list"],
            id="hosts-mapping",
        ),
        pytest.param(
            "groups: [web]\n",
            ["1: a group must be a mapping"],
            id="group-scalar",
        ),
        pytest.param(
            "hosts:\n- [a, b]\n",
            ["2: a host entry must be a mapping"],
            id="host-entry-list",
        ),
        pytest.param(
            "hosts:\n- host: a\n",
            ["2: no ports: give ports here or in defaults"],
            id="no-ports",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [23, {port: 23, expect: refused}]\n",
            ["3: a port here is also listed as open; give each port once"],
            id="two-expectations",
        ),
        pytest.param(
            "- host: a\n",
            ["1: the inventory must be a mapping"],
            id="document-list",
        ),
        pytest.param(
            "just a string\n",
            ["1: the inventory must be a mapping"],
            id="document-scalar",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [1]\n  ports: [2]\n",
            ["4: duplicate key 'ports' (first at line 3)"],
            id="duplicate-key",
        ),
        pytest.param(
            "hosts: []\ndefaults: {ports: [1]}\nhosts: []\n",
            ["3: duplicate key 'hosts' (first at line 1)"],
            id="duplicate-top-key",
        ),
        pytest.param(
            "hosts:\n- host: a\n  ports: [1\n- host: b\n",
            ["4: YAML syntax error: did not find expected ',' or ']'"],
            id="syntax-error",
        ),
        pytest.param(
            "hosts:\n  - host: a\n ports: [1]\n",
            ["3: YAML syntax error: did not find expected key"],
            id="bad-indentation",
        ),
        pytest.param(
            'hosts:\n- host: a\n  ports: [1]\n  labels: {x: "\x07"}\n',
            ["4: character 0x0007 is not allowed in YAML"],
            id="control-character",
        ),
        pytest.param(
            "a: &x [*x]\n",
            ["1: an alias refers to a node that contains it (line 1)"],
            id="recursive-alias",
        ),
    ],
)
def test_errors_and_their_lines(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_an_entry_with_errors_yields_nothing_but_the_rest_is_read() -> None:
    text = """\
        hosts:
          - {host: good1, ports: [1]}
          - {host: bad, ports: [1, 0]}
          - {host: good2, ports: [2]}
          - {host: bad2, ports: [2], expect: nope}
        """
    result = parse(text)
    assert [
        str(item) if isinstance(item, InventoryError) else next(item.endpoints()).host
        for item in result
    ] == [
        "good1",
        f"{FILE}:3: port 0 is out of range (1-65535)",
        "good2",
        f"{FILE}:5: bad expect 'nope'; write one of open, refused, filtered, closed, any",
    ]


def test_broken_defaults_are_reported_once_and_hold_back_every_host() -> None:
    text = """\
        defaults: {ports: [0]}
        hosts: [a, b, {host: c, ports: [1]}]
        """
    assert errors(text) == ["1: port 0 is out of range (1-65535)"]
    assert [item for item in parse(text) if isinstance(item, TargetSpec)] == []


def test_broken_group_holds_back_only_its_hosts() -> None:
    text = """\
        groups:
          - {name: g1, ports: [1], expect: sometimes, hosts: [a]}
          - {name: g2, ports: [2], hosts: [b]}
        """
    assert errors(text) == [
        "2: bad expect 'sometimes'; write one of open, refused, filtered, closed, any"
    ]
    assert [s.labels for s in parse(text) if isinstance(s, TargetSpec)] == [(("group", "g2"),)]


def test_invalid_utf8_reports_its_line() -> None:
    data = b'hosts:\n- host: a\n  ports: [1]\n  labels: {x: "\xff"}\n'
    assert [str(item) for item in parse_yaml_inventory(data, file=FILE)] == [
        f"{FILE}:4: invalid UTF-8 (byte 0xff); save the file as UTF-8"
    ]


def test_a_utf8_bom_is_fine() -> None:
    data = b"\xef\xbb\xbfhosts: [{host: a, ports: [1]}]\n"
    assert [type(item) for item in parse_yaml_inventory(data, file=FILE)] == [TargetSpec]


def _billion_laughs(levels: int) -> str:
    lines = ["a0: &a0 [host]"]
    for level in range(1, levels):
        references = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{references}]")
    lines.append(f"hosts: *a{levels - 1}")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(60)  # expanding it would not end: the refusal is by arithmetic
def test_an_alias_bomb_is_refused_by_arithmetic() -> None:
    result = parse(_billion_laughs(10))  # 10**9 host entries if expanded
    assert [str(item) for item in result] == [
        f"{FILE}:1: aliases expand to more than 1,000,000 nodes; refusing to read it"
    ]


def test_a_modest_alias_fan_out_is_allowed() -> None:
    entries = ["  - &h {host: h, ports: [1]}"] + ["  - *h"] * 9
    text = "hosts:\n" + "\n".join(entries) + "\n"
    assert len(endpoints(text)) == 10  # ten specs; de-duplication is not the reader's job


@pytest.mark.parametrize("loader", ["CSafeLoader", "SafeLoader"])
@pytest.mark.parametrize(
    "garbage",
    [
        "[" * 5000 + "]" * 5000,
        "".join("  " * depth + "a:\n" for depth in range(3000)),
        "- " * 3000 + "x\n",
        "hosts:\n" + "".join("  " * depth + "- host:\n" for depth in range(1, 600)),
    ],
    ids=["flow", "block-mapping", "block-sequence", "nested-hosts"],
)
def test_deeply_nested_garbage_is_an_error_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, loader: str, garbage: str
) -> None:
    if not hasattr(yaml, loader):
        pytest.skip(f"PyYAML without {loader}")
    monkeypatch.setattr(yamlnodes, "LOADER", getattr(yaml, loader))
    result = parse(garbage)
    assert result
    assert all(isinstance(item, InventoryError) for item in result)


def test_a_port_entry_may_name_the_service_that_runs_there() -> None:
    """`{port: 15432, service: postgresql}`: the name is kept for the diagnosis (which then
    also tries postgresql's registered port); an unknown name is an error at its line."""
    data = b"hosts:\n  - host: db1\n    ports: [{port: 15432, service: postgresql}]\n"
    items = list(parse_yaml_inventory(data, file="inv.yaml"))
    (spec,) = items
    assert isinstance(spec, TargetSpec)
    (endpoint,) = spec.endpoints()
    assert (endpoint.port, endpoint.service) == (15432, "postgresql")
    bad = b"hosts:\n  - host: db1\n    ports:\n      - {port: 1, service: nosuch}\n"
    (error,) = list(parse_yaml_inventory(bad, file="inv.yaml"))
    assert str(error) == "inv.yaml:4: unknown service name 'nosuch'; write a port number"


@pytest.mark.parametrize("yaml_only_break", ["\u2028", "\u2029", "\x85", "\r"])
def test_lines_are_counted_as_an_editor_counts_them(yaml_only_break: str) -> None:
    """YAML also breaks lines at LINE/PARAGRAPH SEPARATOR, NEL and a lone CR; an editor
    does not, and FILE:LINE must point where the user looks (found by the fuzz tests)."""
    text = (
        "hosts:\n"
        f'- host: "x{yaml_only_break}y"\n'  # line 2: two lines to YAML
        "  ports: [22]\n"
        "- host: h\n"
        "  ports: [bad]\n"  # line 5
    )
    assert errors(text)[-1] == "5: unknown service name 'bad'; write a port number"


def test_a_syntax_error_after_a_yaml_only_line_break_names_the_editors_line() -> None:
    assert errors('hosts:\n- host: "x\u2028y"\n  ports: [22\n') == [
        "3: YAML syntax error: did not find expected ',' or ']'"
    ]
