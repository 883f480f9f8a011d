"""Bad input never produces a traceback: every inventory reader under generated garbage.

The promise (README, "Errors and duplicates"): every malformed entry becomes a
`FILE:LINE: what is wrong` error and the rest is still read; nothing a user can put in an
inventory makes reachscan raise. These properties feed each reader - the target-spec
grammar, the text reader, the YAML reader, the three Ansible readers - with inputs built
from each format's grammar and then broken (random bytes, invalid UTF-8, a BOM, CRLF,
tabs, ports 0/65536/-1/80-20, `/33`, unbracketed IPv6, unknown services, anchors, merges
and aliases, duplicate keys, ranges like `[01:99999999]`), more than 10,000 inputs per
reader per run. The lazy parts are drained too: `count()` of every spec and `endpoints()`
of the small ones, since an exception deferred into an iterator is still a traceback, only
in the middle of a scan.

Why a seed and a size rather than one Hypothesis strategy per grammar rule: Hypothesis
spends about 0.2 ms per draw, and a grammar-built inventory needs dozens of draws, so
10,000 inputs a reader would cost minutes. Here Hypothesis draws (seed, size) and a plain
`random.Random(seed)` builds `size`-bounded inputs from the grammar tables in
microseconds; Hypothesis still chooses, replays and stores failing seeds and shrinks the
size, and every assertion message carries the offending input. Raw bytes and arbitrary
text come straight from Hypothesis.

A handful of named monsters (a 1 MB line, a billion-laughs alias bomb, 10,000 levels of
nesting, a hundred-million-host range) get deterministic tests with the error expected.
"""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.core.model import Endpoint
from scanner.core.services import SERVICES
from scanner.inventory import (
    DEFAULT_PORTS,
    InventoryError,
    SpecError,
    TargetSpec,
    inventory_specs,
    parse_ports,
    parse_target_spec,
)
from scanner.inventory.ansible import parse_ansible_inventory
from scanner.inventory.textfile import parse_text_lines
from scanner.inventory.yamlfile import parse_yaml_inventory
from scanner.inventory.yamlnodes import MAX_NODES

pytestmark = pytest.mark.hostile

SMALL_SPEC = 512
"""Specs up to this many endpoints are expanded in full; bigger ones are only counted."""

INPUTS_PER_EXAMPLE = 4

FUZZ = settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""2,500 examples a property. Per reader: one grammar property of 2,500 x 4 inputs plus at
least one of raw garbage, so every reader sees >= 12,500 inputs a run."""

seeds = st.tuples(
    st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=0, max_value=12)
)
"""(seed, size): size bounds how many lines, items and breakages an input gets, so
Hypothesis shrinks a failure towards a small input."""

AnsibleKind = Literal["ini", "yaml", "json"]

# --- what every reader must produce ------------------------------------------------------


def error_pattern(file: str, *, one_line: bool = True) -> re.Pattern[str]:
    """`FILE:LINE: message`, the message not empty (and on one line, unless told)."""
    return re.compile(re.escape(file) + r":(\d+): \S" + (r"[^\n]*\Z" if one_line else ""))


def drain(spec: TargetSpec) -> None:
    """Walk what a spec stands for, as the scan would."""
    count = spec.count()
    assert isinstance(count, int) and count >= 1, spec
    if count <= SMALL_SPEC:
        endpoints = list(spec.endpoints())
        assert len(endpoints) == count, spec
        assert all(isinstance(endpoint, Endpoint) for endpoint in endpoints)


def check_items(
    items: Iterable[object],
    *,
    file: str,
    last_line: int,
    source: object,
    one_line: bool = True,
) -> list[TargetSpec | InventoryError]:
    """Consume a reader's output: only specs and well-formed errors within the file.

    `last_line` is an upper bound on the lines the input has (see `lines_in`);
    test_hostile_cli_input.py holds the exact test of an error at the very end.
    """
    pattern = error_pattern(file, one_line=one_line)
    seen: list[TargetSpec | InventoryError] = []
    try:
        for item in items:
            if isinstance(item, InventoryError):
                match = pattern.match(str(item))
                assert match is not None, f"not FILE:LINE: message: {str(item)[:300]!r}"
                assert 0 <= int(match[1]) <= last_line, str(item)[:300]
            else:
                assert isinstance(item, TargetSpec), item
                drain(item)
            seen.append(item)
    except Exception as failure:
        failure.add_note(f"input: {source!r}"[:3000])
        raise
    return seen


def lines_in(data: bytes | str) -> int:
    """An upper bound on the line an error may name: every line break counts, and one
    more for an error at the very end."""
    if isinstance(data, bytes):
        return data.count(b"\n") + data.count(b"\r") + 2
    return data.count("\n") + data.count("\r") + 2


# --- the grammars, as plain functions of a random source ----------------------------------

SERVICE_NAMES = sorted(SERVICES)
NASTY = [
    "\ufeff",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "\x00",
    "\x0b",
    "\x85",
    "\u2028",
    "\u00a0",
    "\udcff",
    "\U0001f600",
    "#",
    " #",
    ":",
    "::",
    "[",
    "]",
    "/",
    ",",
    "-",
    "*",
    "&",
    "!",
    "%",
    "{",
    "}",
    "'",
    '"',
    "\\",
    "$(touch x)",
    "`id`",
    "; rm -rf x",
    "=",
    "..",
    "\u0301",
]
NAMES = [
    "localhost",
    "web1.example.com",
    "a..b",
    "-x",
    "x-",
    "_srv._tcp",
    "*",
    ".",
    "..",
    "xn--bcher-kva.example",
    "a" * 64,
    ("b" * 63 + ".") * 5,
    "fe80::1%eth0",
    "db#1",
    "web",
    "café.example",
    "WEB1.Example.COM",
]
PORT_WORDS = ["0", "1", "65535", "65536", "-1", "99999999999", "080", "0x50", "", " "]
PREFIXES = ["", "", "", "T:", "U:", "t:", "X:", "T:U:", "U: "]
SUFFIXES = ["", "", "", "/tcp", "/udp", "/sctp", "/", "/TCP", "/udp/tcp"]


def gen_octet(rng: random.Random) -> str:
    return str(rng.choice([0, 1, 10, 127, 255, 256, 300, -1, rng.randint(0, 999)]))


def gen_ipv4(rng: random.Random) -> str:
    return ".".join(gen_octet(rng) for _ in range(rng.choice([4, 4, 4, 3, 5])))


def gen_ipv6(rng: random.Random) -> str:
    groups = [f"{rng.getrandbits(16):x}" for _ in range(8)]
    if rng.random() < 0.5:
        start = rng.randint(0, 7)
        groups[start : rng.randint(start, 8)] = [""]
    return ":".join(groups) if any(groups) else "::"


def gen_host(rng: random.Random) -> str:
    kind = rng.randint(0, 8)
    if kind == 0:
        return rng.choice(NAMES)
    if kind == 1:
        return "".join(rng.choices("abcxyz019.-_", k=rng.randint(1, 12)))
    if kind == 2:
        return gen_ipv4(rng)
    if kind == 3:
        return ".".join(
            f"{gen_octet(rng)}-{gen_octet(rng)}" if rng.random() < 0.5 else gen_octet(rng)
            for _ in range(4)
        )
    if kind == 4:
        return f"{gen_ipv4(rng)}/{rng.randint(-1, 40)}"
    if kind == 5:
        return gen_ipv6(rng)
    if kind == 6:
        return f"{gen_ipv6(rng)}/{rng.randint(-1, 140)}"
    if kind == 7:
        return f"[{gen_ipv6(rng)}]"
    return f"[{gen_ipv6(rng)}/{rng.randint(100, 140)}]"


def gen_port_word(rng: random.Random) -> str:
    return rng.choice(PORT_WORDS) if rng.random() < 0.3 else str(rng.randint(-2, 70_000))


def gen_port_item(rng: random.Random) -> str:
    kind = rng.randint(0, 3)
    if kind == 0:
        body = gen_port_word(rng)
    elif kind == 1:
        body = f"{gen_port_word(rng)}-{gen_port_word(rng)}"
    elif kind == 2:
        body = rng.choice([*SERVICE_NAMES, "nosuchservice", "HTTPS", "dns/tcp", "http-alt"])
    else:
        body = str(rng.randint(1, 65535))
    return rng.choice(PREFIXES) + body + rng.choice(SUFFIXES)


def gen_ports(rng: random.Random, size: int) -> str:
    return ",".join(gen_port_item(rng) for _ in range(rng.randint(1, max(1, size // 2))))


def mutate(rng: random.Random, text: str, size: int) -> str:
    """`text` with a few nasty characters inserted or characters deleted."""
    for _ in range(rng.randint(0, min(size, 3))):
        position = rng.randint(0, len(text))
        if rng.random() < 0.3 and text:
            text = text[:position] + text[position + 1 :]
        else:
            nasty = rng.choice(NASTY) if rng.random() < 0.8 else chr(rng.randint(0, 0x10FFFF))
            text = text[:position] + nasty + text[position:]
    return text


def gen_spec(rng: random.Random, size: int) -> str:
    text = gen_host(rng)
    if rng.random() < 0.6:
        text = f"{text}:{gen_ports(rng, size)}"
    if rng.random() < 0.2:
        text = rng.choice([" ", "\t"]) + text + rng.choice([" ", "\t", ""])
    return mutate(rng, text, size) if rng.random() < 0.6 else text


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def no_surrogates(text: str) -> str:
    """For values handed to a YAML emitter, which cannot write lone surrogates."""
    return re.sub("[\ud800-\udfff]", "?", text)


def gen_text_file(rng: random.Random, size: int) -> bytes:
    lines: list[bytes] = []
    for _ in range(size):
        kind = rng.randint(0, 5)
        if kind <= 2:
            line = to_bytes(gen_spec(rng, size))
        elif kind == 3:
            line = b"# " + to_bytes(mutate(rng, gen_spec(rng, size), 3))
        elif kind == 4:
            line = rng.randbytes(rng.randint(0, 40))
        else:
            line = to_bytes(gen_spec(rng, size)) + b"  # " + rng.randbytes(4)
        lines.append(line + rng.choice([b"\n", b"\r\n", b"\r", b"\n\n", b""]))
    data = b"".join(lines)
    return b"\xef\xbb\xbf" + data if rng.random() < 0.2 else data


YAML_SCALARS: list[object] = [
    "open",
    "refused",
    "closed",
    "any",
    "bogus",
    "yes",
    "on",
    "null",
    "~",
    "0x50",
    "53/udp",
    "https",
    "dns/tcp",
    "1e3",
    "",
    None,
    True,
    3.5,
    0,
    -1,
    65536,
    "10.0.0.0/33",
    "::1",
]
YAML_KEYS = [
    "defaults",
    "groups",
    "hosts",
    "host",
    "address",
    "ports",
    "expect",
    "labels",
    "name",
    "port",
    "proto",
    "service",
    "env",
    "__x",
    "bad-label",
    "1abc",
    "unknown",
]


def gen_scalar(rng: random.Random, size: int) -> object:
    kind = rng.randint(0, 3)
    if kind == 0:
        return rng.choice(YAML_SCALARS)
    if kind == 1:
        return rng.randint(-5, 70_000)
    if kind == 2:
        return no_surrogates(gen_spec(rng, size))
    return gen_ports(rng, size)


def gen_value(rng: random.Random, size: int, depth: int = 0) -> object:
    kind = rng.randint(0, 5) if depth < 3 else 0
    if kind <= 2:
        return gen_scalar(rng, size)
    if kind <= 4:
        return [gen_value(rng, size, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(YAML_KEYS): gen_value(rng, size, depth + 1) for _ in range(rng.randint(0, 3))
    }


def gen_host_entry(rng: random.Random, size: int) -> object:
    if rng.random() < 0.3:
        return gen_scalar(rng, size)
    entry: dict[str, object] = {"host": gen_scalar(rng, size)}
    for key in ("ports", "expect", "labels", "address", "junk"):
        if rng.random() < 0.4:
            entry[key] = gen_value(rng, size)
    if rng.random() < 0.5:
        entry["ports"] = [gen_scalar(rng, size) for _ in range(rng.randint(0, 3))]
    return entry


YAML_FRAGMENTS = [
    "&a ",
    "*a",
    "<<: *a\n",
    "- &b [*b]\n",
    "!!python/object/apply:os.system ['touch x']",
    "%YAML 1.1\n---\n",
    "---\n",
    "...\n",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ": ",
    "- ",
    "? ",
    "|\n",
    ">\n",
    "'",
    '"',
    "#",
    "\ufeff",
    "\r\n",
    "\x00",
    "\x07",
    "\udcff",
    "ports: [22]\n",
    "host: 10.0.0.0/33\n",
    "hosts:\n  - host: a\n    host: b\n",
    "  ",
    "\n",
    "!!binary ",
    "<<: [*a, *b]\n",
    "&a {host: x, ports: [22]}",
    "!!set {a, b}",
    "? [a, b]\n: c\n",
]


def splice(rng: random.Random, text: str, size: int) -> bytes:
    """A valid document with YAML syntax spliced in at random places."""
    for _ in range(rng.randint(1, max(1, min(size, 5)))):
        position = rng.randint(0, len(text))
        text = text[:position] + rng.choice(YAML_FRAGMENTS) + text[position:]
    return to_bytes(text)


def dump(document: object, rng: random.Random) -> str:
    return yaml.dump(
        document,
        Dumper=yaml.CSafeDumper,
        allow_unicode=True,
        default_flow_style=rng.choice([False, True, None]),
    )


def gen_yaml_inventory(rng: random.Random, size: int) -> bytes:
    document: dict[str, object] = {}
    if rng.random() < 0.5:
        document["defaults"] = {rng.choice(YAML_KEYS): gen_value(rng, size) for _ in range(2)}
    if rng.random() < 0.5:
        document["groups"] = [
            {
                "name": gen_scalar(rng, size),
                "hosts": [gen_host_entry(rng, size) for _ in range(rng.randint(0, 3))],
                rng.choice(["ports", "labels", "expect", "bogus"]): gen_value(rng, size),
            }
            for _ in range(rng.randint(0, 3))
        ]
    document["hosts"] = [gen_host_entry(rng, size) for _ in range(rng.randint(0, size))]
    text = dump(document, rng)
    if rng.random() < 0.5:
        return splice(rng, text, size)
    if rng.random() < 0.3:  # anchors and merges, written by hand since dump never does
        text = (
            "base: &base {ports: [22], expect: open}\n"
            + text
            + "\n  - {<<: *base, host: 127.0.0.1}\n  - <<: [*base, *base]\n    host: x\n"
        )
    return to_bytes(text)


ANSIBLE_NAMES = [
    "web[01:99999999].example.com",
    "web[01:20]",
    "db-[a:f]",
    "h[0:10:2]",
    "h[5:1]",
    "h[0:10:0]",
    "h[ab:cd]",
    "h[1:3",
    "h]",
    "[::1]:22",
    "10.0.0.1:2222",
    "host:",
    "all",
    "ungrouped",
    "[01:99]x[01:99]y[01:99]",
    "web1",
    "127.0.0.1",
    "::1",
    "h[a:Z]",
]
ANSIBLE_VALUES = [
    "22",
    '"22,443,U:53"',
    "[22, '53/udp', https]",
    "open",
    "refused",
    "bogus",
    "10.0.0.1",
    "::1",
    "10.0.0.0/33",
    "'unterminated",
    "{{ templated }}",
    "65536",
    "",
    "0",
    "U:0",
]
ANSIBLE_VARIABLES = [
    "ansible_host",
    "ansible_port",
    "reachscan_ports",
    "reachscan_expect",
    "reachscan_label_team",
    "reachscan_label_bad-name",
    "other",
    "reachscan_label_",
]
GROUP_NAMES = ["web", "db", "all", "a", "b", "ungrouped", "bad group", "", "x-y"]


def gen_ansible_name(rng: random.Random, size: int) -> str:
    if rng.random() < 0.5:
        return rng.choice(ANSIBLE_NAMES)
    return no_surrogates(mutate(rng, gen_host(rng), size))


def gen_ansible_value(rng: random.Random, size: int) -> str:
    return rng.choice(ANSIBLE_VALUES) if rng.random() < 0.6 else gen_ports(rng, size)


def gen_assignments(rng: random.Random, size: int) -> dict[str, object]:
    return {
        rng.choice(ANSIBLE_VARIABLES): gen_ansible_value(rng, size)
        if rng.random() < 0.7
        else gen_value(rng, size)
        for _ in range(rng.randint(0, 3))
    }


def gen_ini_inventory(rng: random.Random, size: int) -> bytes:
    lines: list[str] = []
    for _ in range(size + 1):
        kind = rng.randint(0, 6)
        if kind == 0:
            suffix = rng.choice(["", ":vars", ":children", ":bogus", ":"])
            lines.append(f"[{rng.choice(GROUP_NAMES)}{suffix}]")
        elif kind <= 3:
            assignments = [
                f"{rng.choice(ANSIBLE_VARIABLES)}={gen_ansible_value(rng, size)}"
                for _ in range(rng.randint(0, 3))
            ]
            lines.append(" ".join([gen_ansible_name(rng, size), *assignments]))
        elif kind == 4:
            lines.append(f"{rng.choice(ANSIBLE_VARIABLES)}={gen_ansible_value(rng, size)}")
        elif kind == 5:
            lines.append(rng.choice(GROUP_NAMES))
        else:
            lines.append(rng.choice(["# c", "; c", "", "  ", "\t[web]", "[web", "a = b = c"]))
    text = rng.choice(["\n", "\r\n"]).join(lines)
    return to_bytes(mutate(rng, text, size)) if rng.random() < 0.4 else to_bytes(text)


def gen_ansible_group(rng: random.Random, size: int, depth: int) -> object:
    if rng.random() < 0.1:
        return gen_value(rng, size)
    group: dict[str, object] = {}
    if rng.random() < 0.7:
        group["hosts"] = {
            gen_ansible_name(rng, size): gen_assignments(rng, size) or None
            for _ in range(rng.randint(0, 3))
        }
    if rng.random() < 0.4:
        group["vars"] = gen_assignments(rng, size)
    if depth > 0 and rng.random() < 0.5:
        group["children"] = {
            rng.choice(GROUP_NAMES): gen_ansible_group(rng, size, depth - 1)
            for _ in range(rng.randint(0, 2))
        }
    return group or None


def gen_ansible_yaml(rng: random.Random, size: int) -> bytes:
    document = {
        rng.choice(["all", "web", "db", "ungrouped"]): gen_ansible_group(rng, size, 3)
        for _ in range(rng.randint(1, 3))
    }
    text = dump(document, rng)
    return splice(rng, text, size) if rng.random() < 0.4 else to_bytes(text)


def gen_ansible_json(rng: random.Random, size: int) -> bytes:
    """The shape `ansible-inventory --list` prints, with wrong types and names inside."""
    groups = rng.sample(["all", "web", "db", "ungrouped", "x"], rng.randint(0, 4))
    document: dict[str, object] = {
        "_meta": {
            "hostvars": {
                gen_ansible_name(rng, size): gen_assignments(rng, size)
                for _ in range(rng.randint(0, 4))
            }
        }
        if rng.random() < 0.8
        else gen_value(rng, size),
    }
    for group in groups:
        if rng.random() < 0.1:
            document[group] = gen_value(rng, size)
            continue
        body: dict[str, object] = {}
        if rng.random() < 0.8:
            body["hosts"] = [gen_ansible_name(rng, size) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.5:
            body["children"] = rng.sample(groups, rng.randint(0, len(groups)))
        if rng.random() < 0.3:
            body["vars"] = gen_assignments(rng, size)
        document[group] = body
    text = json.dumps(document, indent=rng.choice([None, 1]))
    return to_bytes(mutate(rng, text, size)) if rng.random() < 0.3 else to_bytes(text)


def batch(generate: Callable[[random.Random, int], object], seed: int, size: int) -> list[object]:
    rng = random.Random(seed)
    return [generate(rng, size) for _ in range(INPUTS_PER_EXAMPLE)]


def any_text(max_size: int = 80) -> st.SearchStrategy[str]:
    """Arbitrary text, lone surrogates included (what a surrogateescape stream yields)."""
    return st.text(st.characters(codec=None, exclude_categories=()), max_size=max_size)


# --- the target-spec grammar -------------------------------------------------------------


def parse_or_refuse(text: str) -> None:
    try:
        spec = parse_target_spec(text, default_ports=DEFAULT_PORTS, expect=None)
    except SpecError as error:
        assert str(error).strip(), repr(text)
        return
    except Exception as failure:
        failure.add_note(f"input: {text!r}"[:3000])
        raise
    drain(spec)


@FUZZ
@given(seeds)
def test_grammar_specs_parse_or_give_spec_error(seed_and_size: tuple[int, int]) -> None:
    for text in batch(gen_spec, *seed_and_size):
        assert isinstance(text, str)
        parse_or_refuse(text)


@FUZZ
@given(any_text())
def test_arbitrary_text_specs_parse_or_give_spec_error(text: str) -> None:
    parse_or_refuse(text)


@FUZZ
@given(seeds)
def test_port_lists_parse_or_give_spec_error(seed_and_size: tuple[int, int]) -> None:
    rng = random.Random(seed_and_size[0])
    for _ in range(INPUTS_PER_EXAMPLE):
        text = mutate(rng, gen_ports(rng, seed_and_size[1]), seed_and_size[1])
        try:
            port_spec = parse_ports(text)
        except SpecError as error:
            assert str(error).strip(), repr(text)
            continue
        listed = list(port_spec)
        assert len(listed) == len(port_spec) >= 1, repr(text)
        assert all(1 <= port <= 65535 for port, _, _ in listed), repr(text)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("10.0.0.1:0", "out of range"),
        ("10.0.0.1:65536", "out of range"),
        ("10.0.0.1:-1", "bad port item"),
        ("10.0.0.1:80-20", "runs backwards"),
        ("10.0.0.0/33", "out of range"),
        ("2001:db8::1:80,443", "brackets"),
        ("web1:nosuchservice", "unknown service"),
        ("[::1]:U:53,X:80", "unsupported protocol prefix"),
    ],
)
def test_named_bad_specs_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(SpecError, match=complaint):
        parse_target_spec(text, default_ports=DEFAULT_PORTS, expect=None)


# --- the text reader --------------------------------------------------------------------


def check_text_reader(data: bytes) -> None:
    items = check_items(
        parse_text_lines(io.BytesIO(data), file="inv.txt", default_ports=DEFAULT_PORTS),
        file="inv.txt",
        last_line=lines_in(data),
        source=data,
    )
    # One line gives at most one item, and items come in file order.
    lines = [item.origin.line for item in items if item.origin is not None]
    assert lines == sorted(set(lines)), (lines, data)


@FUZZ
@given(seeds)
def test_text_inventories_from_the_grammar_never_raise(seed_and_size: tuple[int, int]) -> None:
    for data in batch(gen_text_file, *seed_and_size):
        assert isinstance(data, bytes)
        check_text_reader(data)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_as_a_text_inventory_never_raise(data: bytes) -> None:
    check_text_reader(data)


@FUZZ
@given(st.lists(any_text(60), max_size=10))
def test_decoded_text_lines_with_lone_surrogates_never_raise(lines: list[str]) -> None:
    """stdin may arrive decoded (surrogateescape for bad bytes), not as bytes."""
    items = check_items(
        parse_text_lines(lines, file="<stdin>", default_ports=DEFAULT_PORTS),
        file="<stdin>",
        last_line=len(lines) + 1,
        source=lines,
    )
    assert len(items) <= len(lines)


@settings(FUZZ, max_examples=500)
@given(seeds)
def test_text_inventories_on_stdin_never_raise(seed_and_size: tuple[int, int]) -> None:
    for data in batch(gen_text_file, *seed_and_size):
        assert isinstance(data, bytes)
        stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="strict")
        check_items(
            inventory_specs("-", fmt="specs", stdin=stdin, default_ports=DEFAULT_PORTS),
            file="<stdin>",
            last_line=lines_in(data),
            source=data,
        )


def test_a_one_megabyte_line_and_friends_give_errors_on_their_own_lines(tmp_path: Path) -> None:
    """CRLF, tabs and a BOM change nothing; the rest is reported line by line."""
    path = tmp_path / "big.txt"
    path.write_bytes(
        b"\xef\xbb\xbf127.0.0.1:22\r\n"  # 1: fine, despite the BOM and CRLF
        + b"x" * 1_048_576
        + b"\n"  # 2: a 1 MB "host name"
        + b"\t127.0.0.2:80\t# tabbed\n"  # 3: fine
        + b"10.0.0.0/33:80\n"  # 4
        + b"10.0.0.1:0,65536\n"  # 5
        + b"10.0.0.1:80-20\n"  # 6
        + b"caf\xe9:80\n"  # 7: Latin-1, not UTF-8
        + b"2001:db8::1:80,443\n"  # 8: IPv6 with ports needs brackets
        + b"web:gopherish\n"  # 9: unknown service
    )
    items = list(inventory_specs(str(path), default_ports=DEFAULT_PORTS))
    errors = {item.origin.line: item.message for item in items if isinstance(item, InventoryError)}
    specs = [item for item in items if isinstance(item, TargetSpec)]

    assert [spec.origin.line for spec in specs if spec.origin is not None] == [1, 3]
    assert sorted(errors) == [2, 4, 5, 6, 7, 8, 9]
    assert len(errors[2]) < 400, "the error must not echo a megabyte back"
    assert "invalid UTF-8" in errors[7]
    assert "brackets" in errors[8]


# --- the YAML reader ----------------------------------------------------------------------


def check_yaml_reader(data: bytes) -> None:
    check_items(
        parse_yaml_inventory(data, file="inv.yaml"),
        file="inv.yaml",
        last_line=lines_in(data),
        source=data,
    )


@FUZZ
@given(seeds)
def test_yaml_inventories_from_the_grammar_never_raise(seed_and_size: tuple[int, int]) -> None:
    for data in batch(gen_yaml_inventory, *seed_and_size):
        assert isinstance(data, bytes)
        check_yaml_reader(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_yaml_never_raise(data: bytes) -> None:
    check_yaml_reader(data)


@FUZZ
@given(
    st.lists(
        st.sampled_from([*YAML_FRAGMENTS, "hosts:", "- host: x", "a: b", "&x {}"]), max_size=30
    ).map("".join)
)
def test_yaml_fragment_soup_never_raises(text: str) -> None:
    check_yaml_reader(to_bytes(text))


def billion_laughs(levels: int = 10, width: int = 10) -> bytes:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    lines.append(f"hosts: *a{levels - 1}")
    return "\n".join(lines).encode()


def test_a_billion_laughs_alias_bomb_is_refused_by_arithmetic() -> None:
    items = list(parse_yaml_inventory(billion_laughs(), file="bomb.yaml"))

    assert len(items) == 1 and isinstance(items[0], InventoryError), items[:3]
    assert str(items[0]).startswith("bomb.yaml:1: ")
    assert f"{MAX_NODES:,}" in str(items[0])


def test_an_alias_that_contains_itself_is_refused() -> None:
    items = list(parse_yaml_inventory(b"hosts: &h\n  - *h\n", file="loop.yaml"))

    assert len(items) == 1 and isinstance(items[0], InventoryError), items
    assert str(items[0]).startswith("loop.yaml:")


DEEP_YAML = {
    "flow-lists": "hosts: " + "[" * 10_000 + "]" * 10_000,
    "flow-maps": "hosts: " + "{a: " * 10_000 + "b" + "}" * 10_000,
    "block-lists": "hosts:\n" + "- " * 10_000 + "x\n",
}


@pytest.mark.parametrize("document", DEEP_YAML.values(), ids=DEEP_YAML.keys())
def test_ten_thousand_levels_of_nesting_give_errors_not_a_crash(document: str) -> None:
    items = check_items(
        parse_yaml_inventory(document.encode(), file="deep.yaml"),
        file="deep.yaml",
        last_line=lines_in(document),
        source="deep",
    )

    assert items and all(isinstance(item, InventoryError) for item in items), items[:3]


def test_duplicate_keys_are_reported_with_both_lines() -> None:
    data = b"hosts:\n  - host: 127.0.0.1\n    ports: [22]\n    ports: [80]\n"

    items = list(parse_yaml_inventory(data, file="dup.yaml"))

    assert [str(item) for item in items] == ["dup.yaml:4: duplicate key 'ports' (first at line 3)"]


# --- the Ansible readers -------------------------------------------------------------------


def check_ansible_reader(data: bytes, kind: AnsibleKind) -> None:
    # one_line: the Ansible YAML reader passes PyYAML's two-line reader errors through
    # (a known bug, held by test_hostile_cli_input.py); every other check still applies.
    check_items(
        parse_ansible_inventory(data, file="hosts", kind=kind, default_ports=DEFAULT_PORTS),
        file="hosts",
        last_line=lines_in(data),
        source=data,
    )


@FUZZ
@given(seeds)
def test_ansible_ini_inventories_never_raise(seed_and_size: tuple[int, int]) -> None:
    for data in batch(gen_ini_inventory, *seed_and_size):
        assert isinstance(data, bytes)
        check_ansible_reader(data, "ini")


@FUZZ
@given(seeds)
def test_ansible_yaml_inventories_never_raise(seed_and_size: tuple[int, int]) -> None:
    for data in batch(gen_ansible_yaml, *seed_and_size):
        assert isinstance(data, bytes)
        check_ansible_reader(data, "yaml")


@FUZZ
@given(seeds)
def test_ansible_json_inventories_never_raise(seed_and_size: tuple[int, int]) -> None:
    for data in batch(gen_ansible_json, *seed_and_size):
        assert isinstance(data, bytes)
        check_ansible_reader(data, "json")


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["ini", "yaml", "json"]))
def test_random_bytes_as_any_ansible_inventory_never_raise(data: bytes, kind: AnsibleKind) -> None:
    check_ansible_reader(data, kind)


@pytest.mark.parametrize(
    "pattern",
    ["web[01:99999999].example.com", "web[00000001:99999999]", "h[0:999999]", "h[a:z][0:9999]"],
)
def test_ansible_ranges_past_the_limit_are_refused_not_expanded(pattern: str) -> None:
    data = f"[web]\n{pattern}\n".encode()

    items = list(
        parse_ansible_inventory(data, file="hosts", kind="ini", default_ports=DEFAULT_PORTS)
    )

    assert len(items) == 1 and isinstance(items[0], InventoryError), items[:3]
    assert str(items[0]).startswith("hosts:2: ")


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("yaml", "all: " + "{children: {g: " * 10_000 + "{}" + "}}" * 10_000),
        ("json", '{"_meta": {"hostvars": ' + "[" * 10_000 + "]" * 10_000 + "}}"),
        ("json", '{"all": {"children": ' + '{"g": ' * 10_000 + "{}" + "}" * 10_000 + "}}"),
    ],
    ids=["yaml", "json-lists", "json-objects"],
)
def test_ansible_inventories_ten_thousand_levels_deep_give_errors(
    kind: AnsibleKind, data: str
) -> None:
    items = check_items(
        parse_ansible_inventory(
            data.encode(), file="hosts", kind=kind, default_ports=DEFAULT_PORTS
        ),
        file="hosts",
        last_line=1,
        source=kind,
    )

    assert items and all(isinstance(item, InventoryError) for item in items), items[:3]
