"""Nasty inventory files through the real CLI: errors at FILE:LINE, exit 2, never a traceback,
and nothing in an inventory is ever executed.

The readers are fuzzed in-process by test_hostile_inventory_fuzz.py; this is the same
promise end to end, where an exception would escape as a traceback: `--list-targets`
(which sends nothing) and a real scan, on binary garbage, a billion-laughs alias bomb,
10,000 levels of nesting and a hundred-million-host Ansible range. Each line on stderr
must be a `reachscan: FILE:LINE: message`.

Also here, regression tests for the few places where the fuzzing found a reader falling
short of that form.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.inventory import DEFAULT_PORTS, InventoryError
from scanner.inventory.ansible import parse_ansible_inventory
from scanner.inventory.yamlfile import parse_yaml_inventory
from tests.hostile.hostile_support import (
    IN_PRIVATE_NETNS,
    REPO_ROOT,
    Reachscan,
    history_runs,
    needs_private_netns,
    no_traceback,
)
from tests.support.listeners import LoopbackServices

pytestmark = pytest.mark.hostile


def binary_garbage() -> bytes:
    """Fifty lines of random bytes, each with an 0xff so no line can be a valid spec (a
    line that happened to be a name would be resolved; the tests' resolver answers it, but
    the test is about errors)."""
    rng = random.Random(20_251_124)
    return b"".join(
        rng.randbytes(rng.randint(0, 60)).replace(b"\n", b"").replace(b"\r", b"") + b"\xff\n"
        for _ in range(50)
    )


def billion_laughs() -> bytes:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    lines.append("hosts: *a9")
    return ("\n".join(lines) + "\n").encode()


NASTY_FILES: dict[str, tuple[str, bytes, int]] = {
    # id: (file name, content, how many errors at least)
    "binary-garbage": ("garbage.txt", binary_garbage(), 50),
    "alias-bomb": ("bomb.yaml", billion_laughs(), 1),
    "deep-nesting": ("deep.yaml", b"hosts: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", 1),
    "deep-block-nesting": ("deep2.yaml", b"hosts:\n" + b"- " * 10_000 + b"x\n", 1),
    "ansible-huge-range": ("hosts.ini", b"[web]\nweb[0:99999999].example.com\n", 1),
    "nul-bytes": ("nul.txt", b"127.0.0.1:22\x00\n\x00\x00\x00\n", 2),
}


@pytest.mark.parametrize("mode", ["list-targets", "scan"])
@pytest.mark.parametrize("case", NASTY_FILES.values(), ids=NASTY_FILES.keys())
def test_a_nasty_inventory_exits_2_with_file_and_line_and_no_traceback(
    reachscan: Reachscan, tmp_path: Path, case: tuple[str, bytes, int], mode: str
) -> None:
    name, content, least_errors = case
    path = tmp_path / name
    path.write_bytes(content)
    extra = ["--list-targets"] if mode == "list-targets" else ["--timeout", "0.5"]

    run = reachscan.run(str(path), *extra, timeout=60)

    assert run.returncode == 2, run.stderr[-2000:]
    no_traceback(run.stderr)
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    nothing = f"reachscan: nothing to scan: {path} has no endpoints"
    if lines and lines[-1].startswith(nothing):
        lines.pop()  # the verdict on an inventory without one good entry (--list-targets too)
    located = re.compile(re.escape(f"reachscan: {path}:") + r"\d+: \S")
    errors = [line for line in lines if located.match(line)]
    assert len(errors) >= least_errors, lines[:5]
    assert len(errors) == len(lines), [line for line in lines if not located.match(line)][:5]


SHELL_TRICKS = [
    "$(touch {marker})",
    "`touch {marker}`",
    "127.0.0.1:22;touch${{IFS}}{marker}",
    "127.0.0.1:22|touch${{IFS}}{marker}",
    "127.0.0.1:22&&touch${{IFS}}{marker}",
    "$(touch${{IFS}}{marker})",
    "`touch${{IFS}}{marker}`:22",
    "127.0.0.1:$(touch${{IFS}}{marker})",
]


def test_shell_metacharacters_in_inventories_are_errors_never_commands(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """Text, YAML and Ansible inventories full of command substitutions: every entry is an
    inventory error (none is a valid spec) and the marker file never appears."""
    work = tmp_path / "work"
    work.mkdir()
    marker = work / "executed"
    tricks = [trick.format(marker=marker) for trick in SHELL_TRICKS]
    text = work / "tricks.txt"
    text.write_text("".join(f"{trick}\n" for trick in tricks))
    yaml_file = work / "tricks.yaml"
    yaml_file.write_text(
        "hosts:\n"
        + "".join(f"  - host: '{trick}'\n    ports: ['$(touch {marker})']\n" for trick in tricks)
    )
    ini = work / "tricks.ini"
    ini.write_text(
        "[web]\n"
        + "".join(
            f"h{index} ansible_host='{trick}' reachscan_ports='$(touch {marker})'\n"
            for index, trick in enumerate(tricks)
        )
    )

    for inventory in (text, yaml_file, ini):
        for extra in (["--list-targets"], ["--timeout", "0.5"]):
            run = reachscan.run(str(inventory), *extra, timeout=60, cwd=work)

            assert run.returncode == 2, run.stderr
            no_traceback(run.stderr)
            assert run.stdout == ""
            assert run.stderr.count(f"reachscan: {inventory}:") >= len(tricks), run.stderr
            assert not marker.exists()
    assert sorted(entry.name for entry in work.iterdir()) == [
        "tricks.ini",
        "tricks.txt",
        "tricks.yaml",
    ]


# --- shortfalls the fuzzing found ----------------------------------------------------------


def test_a_control_character_in_an_ansible_yaml_inventory_is_reported_at_its_line() -> None:
    data = b"all:\n  hosts:\n    a\x00b:\n"

    items = list(
        parse_ansible_inventory(data, file="hosts.yaml", kind="yaml", default_ports=DEFAULT_PORTS)
    )

    assert len(items) == 1 and isinstance(items[0], InventoryError)
    assert str(items[0]).startswith("hosts.yaml:3: ")
    assert "\n" not in str(items[0])


def test_a_syntax_error_at_the_end_of_a_file_names_a_line_that_exists() -> None:
    items = list(parse_yaml_inventory(b"hosts: [", file="inv.yaml"))

    assert [str(item).split(" ", 1)[0] for item in items] == ["inv.yaml:1:"]


def test_the_fix_suggested_for_a_zero_padded_range_is_a_different_range() -> None:
    items = list(
        parse_ansible_inventory(
            b"[web]\nweb[01:999]\n", file="hosts", kind="ini", default_ports=DEFAULT_PORTS
        )
    )

    assert len(items) == 1 and isinstance(items[0], InventoryError)
    assert "e.g. [001:999]" in items[0].message


# --- numbers, tokens, encodings and specs that used to be taken as they came ---------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--timeout", "inf"),
        ("--timeout", "nan"),
        ("--timeout", "1e6"),
        ("--min-timeout", "0"),
        ("--max-time", "inf"),
        ("--rate", "1e-9"),
        ("--rate", "nan"),
        ("--wait-lock", "inf"),
        ("--keep-days", "1e308"),
        ("--keep-days", "nan"),
        ("--retries", "1000000000"),
        ("--retries", "101"),
        ("--diagnose-budget", "1000000001"),
        ("--diagnose-per-endpoint", "257"),
        ("--concurrency", "10000000000"),
        ("--per-host", "1048577"),
        ("--keep", "99999999999999999999999"),
        ("--max-endpoints", "100000001"),
        ("--workers", "65"),
        ("--workers", "1e3"),
    ],
)
def test_non_finite_and_absurd_numbers_are_usage_errors(
    reachscan: Reachscan, services: LoopbackServices, option: str, value: str
) -> None:
    """`--timeout inf` waited forever on a dropped port, `--rate 1e-9` sent one probe in
    30 years, `--retries 1000000000` never finished and `--keep` past SQLite's integers
    was a traceback: every number option has a finite range, said in the message."""
    port = services.tcp("127.77.48.1")

    run = reachscan.run("-t", f"127.77.48.1:{port}", option, value, timeout=30)

    assert run.returncode == 2, run.stderr
    no_traceback(run.stderr)
    assert run.stdout == ""
    said = re.search(
        rf"argument {option}: must be (auto or )?a (whole )?number (from|more than) \S+ ",
        run.stderr,
    )
    assert said is not None, run.stderr
    assert services.accepted("127.77.48.1", port) == 0


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [("--retries", "1000000000", "from 0 to 100"), ("--timeout", "inf", "from 0.001 to 600")],
)
def test_check_refuses_the_same_numbers_as_unknown(
    reachscan: Reachscan, services: LoopbackServices, option: str, value: str, accepted: str
) -> None:
    """`check` takes the scan's options with the same ranges; its usage errors are the
    plugin's UNKNOWN (3) with one status line."""
    port = services.tcp("127.77.48.2")
    command = [
        sys.executable, "-m", "scanner", "check",
        "--hosts-file", reachscan.hosts_file, "--nameserver", reachscan.nameserver,
        "-t", f"127.77.48.2:{port}", option, value,
    ]  # fmt: skip

    run = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False
    )

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert run.stdout.startswith(f"REACHSCAN UNKNOWN - usage: argument {option}: must be a ")
    assert accepted in run.stdout
    assert len(run.stdout.splitlines()) == 1
    assert services.accepted("127.77.48.2", port) == 0


def test_a_huge_bad_port_token_is_cut_in_the_message(reachscan: Reachscan, tmp_path: Path) -> None:
    """A 1 MB port list on one line was echoed whole; now 40 characters and "…"."""
    inventory = tmp_path / "huge.txt"
    inventory.write_text("127.0.0.1:" + "%" * 1_000_000 + "\n")

    run = reachscan.run(str(inventory), "--no-history", timeout=60)

    assert run.returncode == 2, run.stderr[:300]
    no_traceback(run.stderr)
    assert run.stderr.startswith(f"reachscan: {inventory}:1: bad port item '%%%%")
    assert "…" in run.stderr
    assert all(len(line) < 300 for line in run.stderr.splitlines()), run.stderr[:300]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_utf16_or_utf32_inventory_is_said_once(
    reachscan: Reachscan, tmp_path: Path, encoding: str
) -> None:
    """A file saved as UTF-16 gave "invalid UTF-8" plus garbage on every line; now one
    line says what it is and what to do."""
    inventory = tmp_path / "fleet.txt"
    inventory.write_bytes("".join(f"127.0.0.{n}:22\r\n" for n in range(1, 51)).encode(encoding))
    name = "UTF-32" if encoding.startswith("utf-32") else "UTF-16"

    run = reachscan.run(str(inventory), "--no-history")

    assert run.returncode == 2, run.stderr
    no_traceback(run.stderr)
    assert run.stderr.splitlines() == [
        f"reachscan: {inventory}:1: looks like {name}, not UTF-8; save it as UTF-8 "
        "(nothing in it was read)",
        f"reachscan: nothing to scan: {inventory} has no endpoints "
        "(every entry is malformed: see above)",
    ]


@needs_private_netns
@pytest.mark.parametrize(
    ("spec", "address", "port"),
    [("::1:8081", "::1", "8081"), ("2001:db8::1:443", "2001:db8::1", "443")],
)
def test_an_ipv6_literal_followed_by_a_port_is_a_usage_error(
    reachscan: Reachscan, spec: str, address: str, port: str
) -> None:
    """`-t ::1:8081` was probed as the address ::1:8081 (off this machine) on the
    default ports. Nothing is probed now; the message shows both ways to say it. (In a
    namespace with only loopback: were the spec read as an address again, the probes
    of the default ports could not leave.)"""
    run = reachscan.run("-t", spec, "--no-history", prefix=IN_PRIVATE_NETNS)

    assert run.returncode == 2, run.stderr
    no_traceback(run.stderr)
    assert run.stdout == ""
    assert f"[{address}]:{port}" in run.stderr
    assert f"-t {address} -p {port}" in run.stderr
    assert f"[{spec}]" in run.stderr


def test_an_ambiguous_spec_with_a_huge_zone_id_is_cut_in_the_message(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """`fe80::1%<10 MB>:8081` repeated the address and the spec whole, three times each:
    40 MB of stderr. Each is cut like any other token. (`--list-targets`: nothing is
    sent even if the spec were taken as an address.)"""
    inventory = tmp_path / "zone.txt"
    inventory.write_text("fe80::1%" + "z" * 10_000_000 + ":8081\n")

    run = reachscan.run(str(inventory), "--list-targets", timeout=60)

    assert run.returncode == 2, run.stderr[:300]
    no_traceback(run.stderr)
    assert run.stdout == ""
    assert run.stderr.startswith(f"reachscan: {inventory}:1: 'fe80::1%zzz"), run.stderr[:300]
    assert "is ambiguous: for port 8081 on fe80::1%zzz" in run.stderr, run.stderr[:300]
    assert "…]:8081 (or -t fe80::1%zzz" in run.stderr, run.stderr[:300]
    assert all(len(line) < 600 for line in run.stderr.splitlines()), run.stderr[:300]


def test_unambiguous_ipv6_literals_are_still_addresses(reachscan: Reachscan) -> None:
    run = reachscan.run(
        "-t", "::1", "-t", "2001:db8::8081", "-t", "fe80::1", "-t", "[::1:8081]",
        "-p", "9", "--list-targets",
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    hosts = [line.split(" ", 1)[0] for line in run.stdout.splitlines()]
    assert hosts == ["::1", "2001:db8::8081", "fe80::1", "::1:8081"]


@pytest.mark.parametrize("content", ["empty", "devnull", "malformed"])
def test_an_inventory_without_endpoints_is_a_failure_not_a_clean_run(
    reachscan: Reachscan, tmp_path: Path, content: str
) -> None:
    """An empty inventory (or /dev/null, or one of malformed lines only) exited 0, wrote
    a success timestamp and stored a complete run. Now: exit 2, said why, and no output
    or history is touched (the previous .prom keeps its last success)."""
    if content == "devnull":
        inventory = Path("/dev/null")
    else:
        inventory = tmp_path / "fleet.txt"
        inventory.write_text("" if content == "empty" else "web:0\n127.0.0.1:99999\n")
    database = tmp_path / "history.sqlite"
    prom = tmp_path / "r.prom"

    run = reachscan.run(str(inventory), "--db", str(database), "--format", "prom", "-o", str(prom))

    assert run.returncode == 2, run.stderr
    no_traceback(run.stderr)
    assert run.stdout == ""
    last = run.stderr.splitlines()[-1]
    assert last.startswith(f"reachscan: nothing to scan: {inventory} has no endpoints"), last
    assert not prom.exists()
    assert not database.exists() or history_runs(database) == []


def test_listing_an_inventory_without_endpoints_is_a_failure_too(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """--list-targets gives the verdict the scan would: nothing to probe is exit 2."""
    inventory = tmp_path / "fleet.txt"
    inventory.write_text("# emptied by a bad deploy\n")
    run = reachscan.run(str(inventory), "--list-targets")
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    last = run.stderr.splitlines()[-1]
    assert last == f"reachscan: nothing to scan: {inventory} has no endpoints"
