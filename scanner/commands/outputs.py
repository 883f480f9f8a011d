"""The output options every command that writes results shares (`scan`, `check`,
`merge`): `--format F [-o PATH]` pairs, -q, colour, and the refusals that keep an output
from landing on another output or on an input. Light: no engine, no event loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from scanner.outputs import FORMATS, OutputSpec
from scanner.outputs.atomic import output_identity
from scanner.status import UsageError

FORMAT_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "table",
    ".prom": "prom",
    ".xml": "nmap-xml",
}


class OutputAction(argparse.Action):
    """Collects `--format F` and `-o PATH` into ordered (format, path) pairs.

    `--format F` opens a new output (to stdout until an `-o` follows); `-o PATH` gives the
    latest output its path, or opens a new one whose format follows from the file suffix.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        outputs: list[list[str | None]] = getattr(namespace, "outputs", None) or []
        value = str(values)
        if self.dest == "format":
            outputs.append([value, None])
        elif outputs and outputs[-1][1] is None:
            outputs[-1][1] = value
        else:
            outputs.append([None, value])
        namespace.outputs = outputs


def add_output_arguments(
    parser: argparse.ArgumentParser, extra_formats: tuple[str, ...] = ()
) -> None:
    """`extra_formats`: `scan`'s `json`, the comparison of a distributed scan's vantages."""
    output = parser.add_argument_group("output")
    output.add_argument(
        "--format",
        action=OutputAction,
        choices=(*FORMATS, *extra_formats),
        help="output format (repeatable, each optionally followed by -o); "
        "default: table on a terminal, jsonl otherwise",
    )
    output.add_argument(
        "-o",
        "--output",
        dest="output",
        action=OutputAction,
        metavar="PATH",
        help="write the preceding --format to PATH atomically (- for stdout)",
    )
    output.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing when every expectation holds; on trouble, only what is wrong "
        "(files given with -o are written in full either way)",
    )
    output.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is shown only when stderr is a terminal)",
    )
    output.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour in the table output (default: auto)",
    )
    output.add_argument(
        "--changes-only",
        action="store_true",
        help="print only what changed since the previous run (files get everything)",
    )
    output.add_argument(
        "--prom-aggregates-only",
        action="store_true",
        help="--format prom: only run-level metrics, no per-endpoint series (huge fleets)",
    )


def resolve_outputs(
    raw: list[list[str | None]] | None, stdout_is_terminal: bool
) -> tuple[OutputSpec, ...]:
    default_format = "table" if stdout_is_terminal else "jsonl"
    if not raw:
        return (OutputSpec(default_format, "-"),)
    outputs = []
    for format_name, path in raw:
        if format_name is None:
            assert path is not None
            suffix = path[path.rfind(".") :] if "." in path else ""
            format_name = FORMAT_BY_SUFFIX.get(
                suffix.lower(), "jsonl" if path != "-" else default_format
            )
        outputs.append(OutputSpec(format_name, path or "-"))
    to_stdout = [output for output in outputs if output.path == "-"]
    if len(to_stdout) > 1:
        raise UsageError("only one output can go to standard output; give the others -o PATH")
    refuse_shared_files(outputs)
    return tuple(outputs)


def refuse_shared_files(outputs: Sequence[OutputSpec]) -> None:
    """Two outputs into one file: only the last committed would be left, the other lost
    without a word. Compared as files (`x`, `./x`, `/abs/x`, a link to it), before any
    scanning; character devices such as /dev/null may repeat (see `output_identity`)."""
    first_spelling: dict[tuple[object, ...], str] = {}
    for output in outputs:
        identity = None if output.path == "-" else output_identity(output.path)
        if identity is None:
            continue
        earlier = first_spelling.get(identity)
        if earlier is None:
            first_spelling[identity] = output.path
            continue
        same = "given twice" if earlier == output.path else f"is the same file as -o {earlier}"
        raise UsageError(f"-o {output.path}: {same}; each output needs a file of its own")


def refuse_outputs_onto_inputs(
    outputs: Sequence[OutputSpec], inputs: Sequence[tuple[str, str]]
) -> None:
    """An output written over the history would replace the database with results (the
    history lost) or swap the lock file's inode mid-run (a concurrent run then locks
    another file and both run at once); over an inventory or an exclusion list it would
    destroy the input of the next run. Compared as files, like `refuse_shared_files`,
    before anything is opened or probed."""
    named: dict[tuple[object, ...], str] = {}
    for name, path in inputs:
        identity = output_identity(path)
        if identity is not None:
            named.setdefault(identity, name)
    for output in outputs:
        identity = None if output.path == "-" else output_identity(output.path)
        if identity is not None and identity in named:
            raise UsageError(
                f"-o {output.path}: is {named[identity]}; give the results a file of their own"
            )
