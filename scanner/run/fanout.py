"""Results on their way out: counted, batched, handed to every output and the progress bar.

This runs inside the loop's I/O callbacks, so it never raises: an output that fails is
set aside and the scan asked to stop. With diagnosis on, refusals of endpoints expected
open are held back until they have a cause.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio

from scanner.core.diagnose import with_filtered_cause
from scanner.core.evidence import ScanIndex, needs_explanation
from scanner.core.model import Endpoint, Proto, Reason, Result, State
from scanner.core.sinks import EncodedSink, Encoding
from scanner.inventory import InventoryError, InventoryItem
from scanner.net.host_sockets import local_addresses
from scanner.outputs import OutputClosed, OutputError, RunSummary, Sink
from scanner.outputs.progress import Progress
from scanner.run.shard import ShardBatch

BATCH_SIZE = 512
FLUSH_INTERVAL = 0.2

PROTOS = {proto.value: proto for proto in Proto}
STATES = {state.value: state for state in State}
REASONS = {reason.value: reason for reason in Reason}


class ResultFanout:
    """Counts results, batches them and hands each batch to every sink and the progress bar.

    With diagnosis on, refusals of endpoints expected open are held back until they have
    their cause (or until the run is interrupted, when they go out without one).
    """

    def __init__(self, sinks: Sequence[Sink], progress: Progress, diagnosis: bool) -> None:
        self.sinks = list(sinks)
        self.stdout_closed = False
        self.failures: list[OutputError] = []
        self.stop: Callable[[], None] = lambda: None  # set to cancel the scan
        self.follow_up_probes = 0
        self.progress = progress
        self.counts: Counter[State] = Counter()
        self.not_ok = 0
        self.total = 0
        self._batch: list[Result] = []
        self.diagnosis = diagnosis
        self.index = ScanIndex()
        self.held: list[Result] = []
        self._local_addresses = local_addresses() if diagnosis else frozenset()

    def add(self, result: Result) -> None:
        """A result from the main scan."""
        if self.diagnosis:
            self.index.add(result)
            if needs_explanation(result):
                self.held.append(result)
                return
            result = with_filtered_cause(result, local_addresses=self._local_addresses)
        self.emit(result)

    def take(self, batch: ShardBatch) -> None:
        """A batch a shard process counted, encoded and diagnosed itself
        (scanner/run/shard.py): its counts added, its bytes handed to the sinks that take
        them encoded, its results (as many as were asked for) to the others, its
        refusals held for their cause and its observations kept for the diagnosis."""
        states = {STATES[value]: count for value, count in batch.counts}
        self.counts.update(states)
        self.total += batch.total
        self.not_ok += batch.not_ok
        for sink in list(self.sinks):
            if isinstance(sink, EncodedSink):
                data = batch.lines if sink.encoding is Encoding.JSON_LINES else batch.rows
                if data:
                    self._guarded(sink, sink.write_encoded, data)
            elif batch.results:
                self._guarded(sink, sink.write, batch.results)
        self.held.extend(batch.held)
        index = self.index
        for address, port, proto, state, reason, name in batch.observations:
            index.add_observation(
                address, port, PROTOS[proto], (STATES[state], REASONS[reason]), name
            )
        self.progress.advance_counts(batch.total, states)

    def release_held(self, explained: Sequence[Result] | None = None) -> None:
        """Emit the held refusals: explained, or as they were after an interrupt."""
        held, self.held = self.held, []
        for result in held if explained is None else explained:
            self.emit(result)

    def emit(self, result: Result) -> None:
        self.counts[result.state] += 1
        self.total += 1
        if not result.ok:
            self.not_ok += 1
        self._batch.append(result)
        if len(self._batch) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        """Hand the batch to every sink still working. Never raises: this runs inside the
        loop's I/O callbacks, where an exception would only be logged; a sink that fails
        is set aside, the failure recorded, and the scan asked to stop."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        for sink in list(self.sinks):
            self._guarded(sink, sink.write, batch)
        self.progress.advance(batch)

    def finish(self, summary: RunSummary) -> None:
        for sink in list(self.sinks):
            self._guarded(sink, sink.finish, summary)

    def _guarded(self, sink: Sink, action: Callable[[Any], None], argument: Any) -> None:
        try:
            action(argument)
        except OutputClosed:
            self.sinks.remove(sink)
            self.stdout_closed = True
            self.stop()
        except OutputError as failure:
            self.sinks.remove(sink)
            sink.abort()
            self.failures.append(failure)
            self.stop()

    async def flush_periodically(self) -> None:
        while True:
            await anyio.sleep(FLUSH_INTERVAL)
            self.flush()


class InventoryTally:
    """Passes endpoints through, reporting each inventory error on stderr as it is found."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.errors = 0
        self._report = report

    def endpoints(self, items: Iterator[InventoryItem]) -> Iterator[Endpoint]:
        for item in items:
            if isinstance(item, InventoryError):
                self.report(str(item))
            else:
                yield item

    def report(self, error: str) -> None:
        """One inventory error (FILE:LINE: what is wrong), found here or by a shard."""
        self.errors += 1
        self._report(f"reachscan: {error}")
