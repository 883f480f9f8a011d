"""`reachscan merge`: real shard runs on loopback, their files merged into one run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import is_incomplete, parse_records, shard_end
from tests.support.listeners import LoopbackServices

REPO = Path(__file__).resolve().parents[2]
SHARDS = 4


def reachscan(*arguments: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`reachscan ARGUMENTS`; a scan gets no hosts file, a nameserver on loopback's discard
    port, no history unless a --db is given, and no progress bar."""
    command = [sys.executable, "-m", "scanner", *arguments]
    if arguments[0] == "scan":
        command += ["--hosts-file", os.devnull, "--nameserver", "127.0.0.1:9", "--no-progress"]
        if "--db" not in arguments:
            command.append("--no-history")
    completed = subprocess.run(
        command,
        cwd=REPO,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed


Verdicts = dict[tuple[object, object, object], tuple[object, object]]


def verdicts_of(text: str) -> Verdicts:
    found: Verdicts = {}
    for record in parse_records(text):
        key = (record["address"], record["port"], record["proto"])
        assert key not in found, f"{key} twice"
        found[key] = (record["state"], record["reason"])
    return found


@pytest.fixture(scope="module")
def split_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Verdicts, list[Path]]:
    """One sweep scanned whole, and as 4 shard runs each writing its JSON Lines file."""
    folder = tmp_path_factory.mktemp("shards")
    with LoopbackServices() as services:
        opened = sorted(services.tcp(f"127.83.0.{host}") for host in (1, 2))
        target = f"127.83.0.1-3:T:20000-21099,{','.join(map(str, opened))}"
        whole = reachscan("scan", "-t", target, "--vantage", "siteA", "--format", "jsonl")
        assert whole.returncode == 0, whole.stderr
        files = []
        for index in range(SHARDS):
            path = folder / f"shard-{index}.jsonl"
            shard = reachscan(
                "scan", "-t", target, "--shard", f"{index}/{SHARDS}", "--vantage", "siteA",
                "-o", str(path),
            )  # fmt: skip
            assert shard.returncode == 0, shard.stderr
            files.append(path)
    return folder, verdicts_of(whole.stdout), files


def test_the_shards_merged_are_the_whole_scan_and_each_file_says_which_shard_it_is(
    split_scan: tuple[Path, Verdicts, list[Path]],
) -> None:
    _folder, whole, files = split_scan
    for index, path in enumerate(files):
        assert shard_end(path.read_text()) == {
            "shard": f"{index}/{SHARDS}",
            "vantage": "siteA",
            "results": len(parse_records(path.read_text())),
        }
    merged = reachscan("merge", *map(str, files), "--format", "jsonl")
    assert merged.returncode == 0, merged.stderr
    assert merged.stderr == ""
    assert verdicts_of(merged.stdout) == whole
    assert shard_end(merged.stdout) is None and not is_incomplete(merged.stdout)
    assert {record["vantage"] for record in parse_records(merged.stdout)} == {"siteA"}
    assert len(whole) == 3 * (1100 + 2)
    assert {verdict for verdict in whole.values()} == {
        ("open", "syn-ack"),
        ("refused", "conn-refused"),
    }


def test_shards_one_after_another_on_stdin_merge_the_same(
    split_scan: tuple[Path, Verdicts, list[Path]],
) -> None:
    _folder, whole, files = split_scan
    together = b"".join(path.read_bytes() for path in reversed(files))
    merged = reachscan("merge", "-", "--format", "jsonl", stdin=together)
    assert merged.returncode == 0, merged.stderr
    assert verdicts_of(merged.stdout) == whole


def test_a_merged_run_is_a_run_of_the_history(
    split_scan: tuple[Path, Verdicts, list[Path]], tmp_path: Path
) -> None:
    _folder, whole, files = split_scan
    database = tmp_path / "history.sqlite"
    for _ in range(2):
        merged = reachscan("merge", *map(str, files), "--db", str(database), "-o", os.devnull)
        assert merged.returncode == 0, merged.stderr
    with sqlite3.connect(database) as connection:
        runs = connection.execute("SELECT status, total, vantage FROM runs ORDER BY id").fetchall()
    assert runs == [("complete", len(whole), "siteA")] * 2
    diff = reachscan("diff", "--db", str(database), "--format", "json")
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout)["changes"] == []


def test_missing_duplicated_and_truncated_shards_are_reported_and_the_rest_merged(
    split_scan: tuple[Path, Verdicts, list[Path]], tmp_path: Path
) -> None:
    _folder, whole, files = split_scan
    truncated = tmp_path / "shard-2-cut.jsonl"
    text = files[2].read_bytes()
    truncated.write_bytes(text[: len(text) // 2])  # cut mid-line, the end line lost
    cut_line = truncated.read_bytes().count(b"\n") + 1
    database = tmp_path / "history.sqlite"
    merged = reachscan(
        "merge", str(files[0]), str(files[1]), str(files[1]), str(truncated),
        "--format", "jsonl", "--db", str(database),
    )  # fmt: skip
    assert merged.returncode == 2
    errors = merged.stderr.splitlines()
    assert f"reachscan: {truncated}:{cut_line}: the last line is cut short" in merged.stderr
    assert any(
        line.startswith(f"reachscan: {files[1]}:") and "shard 1/4 came already" in line
        for line in errors
    ), errors
    assert f"reachscan: {truncated}:1: {cut_line - 1:,} lines from here on have no end" in (
        merged.stderr
    )
    assert "reachscan: shard 2/4 is missing" in merged.stderr
    assert "reachscan: shard 3/4 is missing" in merged.stderr
    got = verdicts_of(merged.stdout)
    assert is_incomplete(merged.stdout), "a partial merge says so in its JSON Lines"
    kept_from = [verdicts_of(files[0].read_text()), verdicts_of(files[1].read_text())]
    assert len(got) == sum(map(len, kept_from)) + cut_line - 1
    assert all(whole[key] == verdict for key, verdict in got.items())
    with sqlite3.connect(database) as connection:
        (status,) = connection.execute("SELECT status FROM runs").fetchone()
    assert status == "interrupted", "a partial merge is never compared as a whole run"


def test_bad_lines_are_named_and_skipped(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    good = {
        "host": "127.0.0.1", "address": "127.0.0.1", "port": 22, "proto": "tcp",
        "state": "open", "reason": "syn-ack", "rtt_ms": 0.1, "resolved_via": "literal",
        "expect": "open", "ok": True, "labels": {}, "cause": None,
        "ts": "2026-12-05T10:00:00.000Z", "vantage": "a",
    }  # fmt: skip
    source.write_text(
        "\n".join(
            [json.dumps(good), "not json", json.dumps({**good, "port": "x"}), json.dumps([1])]
        )
        + "\n"
    )
    merged = reachscan("merge", str(source), "--format", "jsonl")
    assert merged.returncode == 2
    errors = merged.stderr.splitlines()
    assert errors[0].startswith(f"reachscan: {source}:2: not a result or an end line: not JSON (")
    assert errors[1:] == [
        f"reachscan: {source}:3: not a result or an end line: `port` is not a port number",
        f"reachscan: {source}:4: not a result or an end line: not a JSON object",
    ]
    assert [record["port"] for record in parse_records(merged.stdout)] == [22]


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    missing = reachscan("merge", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("nope.jsonl: no such file")
    twice = reachscan("merge", "-", "-")
    assert twice.returncode == 2 and "can be read only once" in twice.stderr
    (tmp_path / "in.jsonl").write_text("")
    onto = reachscan("merge", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "in.jsonl"))
    assert onto.returncode == 2 and "is the input" in onto.stderr


READ_SYSCALL = {"x86_64": 0, "aarch64": 63}


def wait_until_reading_stdin(pid: int) -> None:
    """Until the process sleeps in read(0, ...): it has taken every line there was (the
    kernel's own word, /proc/PID/syscall, rather than a guess at how long it needs)."""
    number = READ_SYSCALL.get(os.uname().machine)
    if number is None:
        pytest.skip(f"read's system call number on {os.uname().machine} is not known here")
    deadline = time.monotonic() + 60
    while not Path(f"/proc/{pid}/syscall").read_text().startswith(f"{number} 0x0 "):
        assert time.monotonic() < deadline, "the merge never waited for more input"
        time.sleep(0.05)


def test_an_interrupt_while_reading_writes_what_was_read(
    split_scan: tuple[Path, Verdicts, list[Path]], tmp_path: Path
) -> None:
    """SIGTERM while the merge waits on a pipe that stays open: the lines read so far are
    written, marked as a partial run, and the exit status is 130."""
    _folder, _whole, files = split_scan
    output = tmp_path / "merged.jsonl"
    merging = subprocess.Popen(
        [sys.executable, "-m", "scanner", "merge", "-", "-o", str(output)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert merging.stdin is not None and merging.stderr is not None
    first = files[0].read_bytes().splitlines(keepends=True)[:50]
    merging.stdin.write(b"".join(first))
    merging.stdin.flush()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".merged.jsonl.tmp-*")):  # the first line made the run
        assert time.monotonic() < deadline, "the merge never opened its output"
        time.sleep(0.05)
    wait_until_reading_stdin(merging.pid)  # every line taken, waiting for more
    merging.send_signal(signal.SIGTERM)
    assert merging.wait(timeout=60) == 130, "stopped before its input ended"
    _, stderr_bytes = merging.communicate(timeout=60)
    stderr = stderr_bytes.decode()
    assert "interrupted by SIGTERM; writing the results finished so far" in stderr
    text = output.read_text()
    assert is_incomplete(text)
    assert len(parse_records(text)) == 50


def test_compare_flags_what_two_vantages_saw_differently(tmp_path: Path) -> None:
    """Two real runs, named as two vantages, with a service stopped between them: the
    port it served is path-dependent (open from one, refused from the other); the rest
    is alike and counted, not shown."""
    with LoopbackServices() as services:
        served = services.tcp("127.83.5.1")
        target = f"127.83.5.1:T:20000-20009,{served}"
        first = reachscan(
            "scan", "-t", target, "--vantage", "east", "-o", str(tmp_path / "e.jsonl")
        )
        assert first.returncode == 0, first.stderr
    second = reachscan("scan", "-t", target, "--vantage", "west", "-o", str(tmp_path / "w.jsonl"))
    assert second.returncode == 0, second.stderr
    table = reachscan("compare", str(tmp_path / "e.jsonl"), str(tmp_path / "w.jsonl"))
    assert table.returncode == 1, table.stderr
    assert table.stdout.splitlines()[1].split() == [
        "127.83.5.1", str(served) + "/tcp", "open", "(syn-ack)", "refused", "(conn-refused)",
        "path-dependent",
    ]  # fmt: skip
    assert "Not shown: 10 endpoints every vantage sees alike and as expected" in table.stdout
    assert table.stdout.rstrip().endswith(
        "11 endpoints from 2 vantages (east, west): 1 path-dependent"
    )
    document = reachscan(
        "compare", str(tmp_path / "w.jsonl"), str(tmp_path / "e.jsonl"), "--format", "json"
    )
    rows = json.loads(document.stdout)["endpoints"]
    assert [row["port"] for row in rows if row["path-dependent"]] == [served]
    alike = reachscan("compare", str(tmp_path / "e.jsonl"), str(tmp_path / "e.jsonl"))
    assert alike.returncode == 2, "the same file twice: duplicates, said"
    assert "came before: a duplicate, kept once" in alike.stderr
