"""`reachscan serve` end to end: a real server process on loopback, scraped with urllib.

The served metrics must be the textfile's: the same run written by `--format prom` and
read back from the history gives the same samples, plus serve's own. Nothing here binds
or connects anywhere but 127.0.0.1 and ::1; urllib is built without proxy support so an
`http_proxy` in the environment cannot send a scrape off the machine. The server listens
on port 0 and the test reads the port from its start line, so no port is guessed.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.commands.serve import parse_listen_address
from scanner.core.model import Result, State
from scanner.core.sinks import RunInfo
from scanner.history.records import RunStatus
from scanner.history.store import HistoryStore
from scanner.outputs.atomic import AtomicWriter
from scanner.outputs.prom import PromSink
from scanner.serve.metrics import MemoryTarget, MetricsRenderer, render_run
from tests.support.history import VANTAGE, make_result, store_run, summary_of
from tests.support.listeners import LoopbackServices, free_port
from tests.support.serve import REPO_ROOT, Samples, Served, get, samples_of, serving

SERVE_METRICS = {
    "reachscan_history_up",
    "reachscan_runs_stored",
    "reachscan_served_run_id",
    "reachscan_last_run_age_seconds",
}


def without_serve_metrics(samples: Samples) -> Samples:
    return {key: value for key, value in samples.items() if key[0] not in SERVE_METRICS}


def endpoint(host: str, address: str, port: int, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            {
                "host": host,
                "address": address,
                "port": str(port),
                "proto": "tcp",
                "vantage": VANTAGE,
                **labels,
            }.items()
        )
    )


# --- the server process -----------------------------------------------------------------


def reachscan(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scanner", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def stop(served: Served, signum: signal.Signals) -> tuple[int, str]:
    """Send `signum`; the exit status and whatever else the server wrote to stderr."""
    served.process.send_signal(signum)
    _, stderr = served.process.communicate(timeout=10)
    return served.process.returncode, stderr.decode()


# --- stored runs ------------------------------------------------------------------------


def fleet_results(ts: float) -> list[Result]:
    return [
        make_result(port=22, ts=ts),
        make_result(port=5432, state=State.REFUSED, cause_kind="service-down", ts=ts),
        make_result(host="web.example", address="10.0.0.9", port=443, ts=ts, rtt_ms=1.5),
        make_result(host="gone.example", address=None, state=State.UNRESOLVED, ts=ts),
    ]


def textfile_of(results: list[Result], started: float, path: Path) -> str:
    """What `--format prom -o PATH` writes for this run, through the real file writer."""
    sink = PromSink(AtomicWriter(str(path)))
    sink.start(
        RunInfo(
            started=started, command="reachscan scan fleet.yaml", version="0.1.0", vantage=VANTAGE
        )
    )
    sink.write(results)
    sink.finish(summary_of(results, started + 5))
    return path.read_text(encoding="utf-8")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite"


# --- what /metrics serves -----------------------------------------------------------------


def test_metrics_are_the_textfile_metrics_of_the_run(db: Path, tmp_path: Path) -> None:
    started = time.time() - 65
    results = fleet_results(started)
    with HistoryStore.open(db) as store:
        run_id = store_run(store, results, started=started)
    textfile = samples_of(textfile_of(results, started, tmp_path / "reachscan.prom"))

    with serving(db) as served:
        scraped = served.scrape()

    assert without_serve_metrics(scraped) == textfile
    assert (
        scraped[("reachscan_endpoint_up", endpoint("db1.example", "10.0.0.5", 22, env="prod"))] == 1
    )
    assert (
        scraped[("reachscan_probe_success", endpoint("db1.example", "10.0.0.5", 5432, env="prod"))]
        == 0
    )
    assert (
        scraped[("reachscan_refused_endpoints", (("cause", "service-down"), ("vantage", VANTAGE)))]
        == 1
    )
    assert scraped[("reachscan_endpoints", (("state", "unresolved"), ("vantage", VANTAGE)))] == 1
    assert scraped[("reachscan_history_up", ())] == 1
    assert scraped[("reachscan_served_run_id", ())] == run_id
    assert scraped[("reachscan_runs_stored", (("status", "complete"),))] == 1
    assert 55 < scraped[("reachscan_last_run_age_seconds", ())] < 90  # finished 60 s ago


def test_the_newest_complete_run_is_served(db: Path) -> None:
    now = time.time()
    with HistoryStore.open(db) as store:
        success = store_run(store, [make_result(port=22)], started=now - 300)
        served_run = store_run(store, fleet_results(now - 200), started=now - 200)
        store_run(store, [make_result(port=1)], started=now - 100, interrupted=True)
        store_run(store, [make_result(port=2)], started=now - 10, finish=False)
        success_finished = store.get_run(success).finished

    with serving(db, "--prom-aggregates-only") as served:
        scraped = served.scrape()

    assert scraped[("reachscan_served_run_id", ())] == served_run
    assert scraped[("reachscan_endpoints", (("state", "refused"), ("vantage", VANTAGE)))] == 1
    assert scraped[("reachscan_run_interrupted", (("vantage", VANTAGE),))] == 0
    assert {status: scraped[("reachscan_runs_stored", (("status", status),))]
            for status in ("running", "complete", "interrupted", "failed")} == {
        "running": 1, "complete": 2, "interrupted": 1, "failed": 0,
    }  # fmt: skip
    # The served run had a refusal: the last success is the earlier run's, from the history.
    assert (
        scraped[("reachscan_last_success_timestamp_seconds", (("vantage", VANTAGE),))]
        == success_finished
    )
    assert not [name for name, _ in scraped if name == "reachscan_endpoint_up"]  # aggregates only


def test_before_any_run_completes_only_serve_metrics(db: Path) -> None:
    with serving(db) as served:  # no file yet: serve starts and says so
        missing = served.scrape()
        assert "does not exist yet" in served.start_lines[0]
        assert not db.exists()  # a reader never creates the history
        with HistoryStore.open(db) as store:
            store_run(store, [make_result()], started=time.time(), finish=False)
        running_only = served.scrape()

    assert set(missing) == {
        ("reachscan_history_up", ()),
        *[("reachscan_runs_stored", (("status", status.value),)) for status in RunStatus],
    }
    assert all(value == 0 for key, value in missing.items() if key[0] == "reachscan_runs_stored")
    assert running_only[("reachscan_runs_stored", (("status", "running"),))] == 1
    assert {name for name, _ in running_only} == {"reachscan_history_up", "reachscan_runs_stored"}


def test_index_page_links_the_metrics_and_other_paths_are_404(db: Path) -> None:
    with serving(db) as served:
        index = get(f"{served.base_url}/")
        missing = get(f"{served.base_url}/metrics/extra")
        with_query = get(f"{served.base_url}/metrics?debug=1")
    assert index[0] == 200 and index[1].startswith("text/html")
    assert 'href="/metrics"' in index[2]
    assert missing[0] == 404 and "/metrics" in missing[2]
    assert with_query[0] == 200


def test_ipv6_loopback(db: Path) -> None:
    with HistoryStore.open(db) as store:
        store_run(store, [make_result(port=22)], started=time.time())
    with serving(db, listen="[::1]:0") as served:
        assert served.base_url.startswith("http://[::1]:")
        assert (
            served.scrape()[("reachscan_endpoints", (("state", "open"), ("vantage", VANTAGE)))] == 1
        )


# --- starting and stopping ----------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly_and_requests_are_not_logged(
    db: Path, signum: signal.Signals
) -> None:
    with HistoryStore.open(db) as store:
        store_run(store, [make_result()], started=time.time())
    with serving(db) as served:
        for _ in range(3):
            served.scrape()
        get(f"{served.base_url}/nothing")
        status, stderr = stop(served, signum)
    assert status == 0
    assert served.start_lines == [f"serving {served.base_url}/metrics"]
    assert stderr == ""  # nothing per request, nothing on the way out


@pytest.mark.parametrize(
    ("listen", "complaint"),
    [
        ("localhost:9888", "not an IP address"),
        ("::1:9888", "brackets"),
        ("127.0.0.1", "expected ADDRESS:PORT"),
        ("127.0.0.1:70000", "from 0 to 65535"),
    ],
)
def test_a_bad_listen_address_is_a_usage_error(listen: str, complaint: str) -> None:
    run = reachscan("serve", "--listen", listen, timeout=30)
    assert run.returncode == 2
    assert "argument --listen" in run.stderr and complaint in run.stderr


def test_a_port_in_use_is_reported(db: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = reachscan("serve", "--listen", f"127.0.0.1:{port}", "--db", str(db), timeout=30)
    assert run.returncode == 2
    assert f"cannot listen on http://127.0.0.1:{port}" in run.stderr


def test_a_database_of_another_program_is_refused_at_start(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    other.write_bytes(b"not a database at all, just text" * 100)
    run = reachscan("serve", "--listen", "127.0.0.1:0", "--db", str(other), timeout=30)
    assert run.returncode == 2
    assert "not an SQLite database" in run.stderr


# --- end to end with a real scan ----------------------------------------------------------


def test_a_real_scan_is_served_as_its_textfile(db: Path, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("", encoding="utf-8")
    textfile = tmp_path / "reachscan.prom"
    with LoopbackServices() as services:
        listening = services.tcp("127.0.0.1")
        closed = free_port("tcp", "127.0.0.1")
        scan = reachscan(
            "scan", "-t", f"127.0.0.1:{closed},{listening}", "--db", str(db),
            "--hosts-file", str(hosts), "--nameserver", "127.0.0.1:9", "--no-progress",
            "--vantage", VANTAGE,
            "--format", "prom", "-o", str(textfile),
        )  # fmt: skip
    assert scan.returncode == 0, scan.stderr

    with serving(db) as served:
        scraped = served.scrape()

    assert without_serve_metrics(scraped) == samples_of(textfile.read_text(encoding="utf-8"))
    assert scraped[("reachscan_endpoint_up", endpoint("127.0.0.1", "127.0.0.1", listening))] == 1
    assert scraped[("reachscan_endpoint_up", endpoint("127.0.0.1", "127.0.0.1", closed))] == 0


# --- in process: the renderer's cache and its error reporting -----------------------------


def test_a_run_is_rendered_once_while_it_stays_the_newest(db: Path) -> None:
    with HistoryStore.open(db) as store:
        store_run(store, fleet_results(1_000.0), started=1_000.0)
        renderer = MetricsRenderer(db, clock=lambda: 2_000.0)
        first = renderer.render()
        # A scan in progress writes batches (into the WAL): the served run is unchanged.
        store_run(store, [make_result(port=9)], started=1_500.0, finish=False)
        second = renderer.render()
        assert second.joined().replace(b'running"} 1.0', b'running"} 0.0') == first.joined()
        assert second.parts[0] is first.parts[0]  # the very same bytes, not a copy
        assert renderer.renders == 1
        store_run(store, [make_result(port=10)], started=1_600.0)
        newer = renderer.render().joined()
    assert renderer.renders == 2
    assert (
        samples_of(newer.decode())[
            ("reachscan_endpoints", (("state", "open"), ("vantage", VANTAGE)))
        ]
        == 1
    )


def test_an_unreadable_history_reads_as_down_and_is_reported_once(db: Path) -> None:
    with HistoryStore.open(db) as store:
        store_run(store, [make_result()], started=1_000.0)
    reports: list[str] = []
    renderer = MetricsRenderer(db, report=reports.append)
    assert samples_of(renderer.render().joined().decode())[("reachscan_history_up", ())] == 1

    saved = db.read_bytes()
    db.write_bytes(b"garbage " * 512)
    for _ in range(3):
        assert samples_of(renderer.render().joined().decode()) == {("reachscan_history_up", ()): 0}
    db.write_bytes(saved)
    assert samples_of(renderer.render().joined().decode())[("reachscan_history_up", ())] == 1

    assert len(reports) == 2
    assert "not an SQLite database" in reports[0]
    assert "readable again" in reports[1]


def test_render_run_replays_the_store_into_the_prom_sink(db: Path) -> None:
    results = fleet_results(1_000.0)
    direct = MemoryTarget()
    sink = PromSink(direct)
    sink.start(
        RunInfo(
            started=1_000.0, command="reachscan scan fleet.yaml", version="0.1.0", vantage=VANTAGE
        )
    )
    sink.write(results)
    sink.finish(summary_of(results, 1_005.0))
    with HistoryStore.open(db) as store:
        run = store.get_run(store_run(store, results, started=1_000.0))
        assert render_run(store, run, aggregates_only=False) == direct.committed


@pytest.mark.parametrize(
    ("text", "host", "port", "family"),
    [
        ("127.0.0.1:9888", "127.0.0.1", 9888, socket.AF_INET),
        ("0.0.0.0:9888", "0.0.0.0", 9888, socket.AF_INET),
        ("[::1]:9888", "::1", 9888, socket.AF_INET6),
        ("[::]:0", "::", 0, socket.AF_INET6),
    ],
)
def test_listen_addresses(text: str, host: str, port: int, family: socket.AddressFamily) -> None:
    address = parse_listen_address(text)
    assert (address.host, address.port, address.family) == (host, port, family)


@pytest.mark.parametrize("text", ["[127.0.0.1]:80", "[::1]9888", "[::1", "1.2.3.4:", "1.2.3.4:٣"])
def test_listen_addresses_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"9888|port|brackets|expected"):
        parse_listen_address(text)
