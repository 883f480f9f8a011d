"""YAML node hygiene shared by reachscan's YAML readers (its own inventories and Ansible's).

PyYAML's constructor loses line numbers, silently keeps the last of two duplicate keys
and expands aliases without limit, so the readers compose documents to *nodes* and walk
those. This module is what every such walk needs first: the safe loader, refusing the
characters YAML refuses, marks counted in lines as an editor counts them, one FILE:LINE
error for a syntax error, the alias graph checked for cycles and for a "billion laughs"
expansion past `MAX_NODES` (by arithmetic, not by expanding it), and mapping pairs with
`<<` merges applied and duplicate keys reported. No schema here: that is the readers'.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence

import yaml
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from scanner.core.errors import InventoryError, decode_inventory
from scanner.core.model import Origin

MAX_NODES = 1_000_000
"""The most nodes a document may have with every alias expanded."""

LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)
"""The loader every reader composes with: safe (no Python objects), in C where available."""

NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_MERGE_DEPTH = 32
# Characters YAML 1.1 refuses in a stream (PyYAML's Reader.NON_PRINTABLE).
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)

Report = Callable[[Node, str], None]
"""Where a walk reports an error at a node."""


def compose_nodes(data: bytes, file: str, *, single_document: bool) -> list[Node] | InventoryError:
    """The root nodes of the non-empty documents in `data`, marks counted as an editor
    counts lines; or the one error that stops the file from being read at all.

    `single_document`: the file must hold one document (as Ansible's reader wants);
    otherwise every document of the stream is returned.
    """
    text = decode_inventory(data, file)
    if isinstance(text, InventoryError):
        return text
    unreadable = non_printable_error(text, file)
    if unreadable is not None:
        return unreadable
    try:
        if single_document:
            documents: list[Node | None] = [yaml.compose(text, Loader=LOADER)]
        else:
            documents = list(yaml.compose_all(text, Loader=LOADER))
    except (yaml.YAMLError, RecursionError) as error:
        return compose_error(error, text, file)
    roots = [document for document in documents if document is not None and not is_null(document)]
    renumber_marks(roots, text)
    return roots


def is_null(node: Node) -> bool:
    """An empty value (`~`, `null`, or nothing written)."""
    return isinstance(node, ScalarNode) and node.tag == NULL_TAG


def non_printable_error(text: str, file: str) -> InventoryError | None:
    """A character YAML refuses, at its line (PyYAML's own message names a position in
    "<unicode string>" on a second line)."""
    bad_character = _NON_PRINTABLE.search(text)
    if bad_character is None:
        return None
    line = text.count("\n", 0, bad_character.start()) + 1
    return InventoryError(
        Origin(file, line), f"character {ord(bad_character[0]):#06x} is not allowed in YAML"
    )


_YAML_ONLY_BREAKS = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
"""Line breaks to YAML (a lone CR, NEL, LINE and PARAGRAPH SEPARATOR) that an editor
does not count: after one of them, PyYAML's marks run ahead of the file's lines."""


def renumber_marks(roots: Sequence[Node], text: str) -> None:
    """Make every mark of the documents composed from `text` count lines as an editor
    does (newlines before its character index), so FILE:LINE points where the user
    looks. A file without YAML-only line breaks, the usual one, needs nothing."""
    if _YAML_ONLY_BREAKS.search(text) is None:
        return
    newlines = [match.start() for match in re.finditer("\n", text)]
    done: set[int] = set()
    pending = list(roots)
    while pending:
        node = pending.pop()
        if id(node) in done:
            continue  # an alias: the same node again (or a cycle)
        done.add(id(node))
        node.start_mark = _editor_mark(node.start_mark, newlines)
        node.end_mark = _editor_mark(node.end_mark, newlines)
        pending.extend(children(node))


def _editor_mark(mark: Mark, newlines: list[int]) -> Mark:
    # libyaml's marks are read-only: a new one, with the line counted in newlines.
    line = bisect.bisect_left(newlines, mark.index)
    return Mark(mark.name, mark.index, line, mark.column, None, 0)  # no buffer: no snippet


def compose_error(error: yaml.YAMLError | RecursionError, text: str, file: str) -> InventoryError:
    """One FILE:LINE error for whatever composing the document raised, its line counted
    as an editor does. PyYAML marks an error at the end of a file without a final newline
    one line past the last line: clamp it to a line that exists."""
    if isinstance(error, RecursionError):
        return InventoryError(Origin(file, 0), "YAML nested too deeply")
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        last_line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        line = min(text.count("\n", 0, mark.index) + 1, last_line) if mark is not None else 0
        return InventoryError(Origin(file, line), f"YAML syntax error: {error.problem}")
    return InventoryError(Origin(file, 0), f"YAML error: {' '.join(str(error).split())}")


def graph_problem(root: Node) -> str | None:
    """Why the node graph may not be walked (a cycle, or too big expanded), or None.

    Aliases make the graph a DAG whose expanded size can be exponential in its node
    count; sizes are computed bottom-up once per distinct node, iteratively so deep
    nesting cannot exhaust the stack.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in children(node))
            sizes[key] = min(total, MAX_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in on_path:
            return f"an alias refers to a node that contains it (line {node.start_mark.line + 1})"
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children(node) if id(child) not in sizes)
    if sizes[id(root)] > MAX_NODES:
        return f"aliases expand to more than {MAX_NODES:,} nodes; refusing to read it"
    return None


def children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def node_origin(file: str, node: Node) -> Origin:
    """FILE:LINE of a node (marks count lines from 0)."""
    return Origin(file, node.start_mark.line + 1)


def mapping_pairs(node: MappingNode, report: Report, depth: int = 0) -> list[tuple[Node, Node]]:
    """The key/value pairs with `<<` merges applied; reports duplicate keys.

    Keys written in the mapping win over merged ones, and earlier merge sources over
    later ones, as the YAML merge-key spec says; those overrides are not duplicates.
    """
    explicit: dict[str, Node] = {}
    pairs: list[tuple[Node, Node]] = []
    merged: list[tuple[Node, Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            merged.extend(_merge_sources(value_node, report, depth))
            continue
        if isinstance(key_node, ScalarNode):
            first = explicit.get(key_node.value)
            if first is not None:
                report(
                    key_node,
                    f"duplicate key {key_node.value!r} (first at line {first.start_mark.line + 1})",
                )
                continue
            explicit[key_node.value] = key_node
        pairs.append((key_node, value_node))
    seen = set(explicit)
    for key_node, value_node in merged:
        if isinstance(key_node, ScalarNode):
            if key_node.value in seen:
                continue
            seen.add(key_node.value)
        pairs.append((key_node, value_node))
    return pairs


def _merge_sources(node: Node, report: Report, depth: int) -> list[tuple[Node, Node]]:
    if depth >= _MAX_MERGE_DEPTH:
        report(node, "'<<' merges nested too deeply")
        return []
    sources = list(node.value) if isinstance(node, SequenceNode) else [node]
    merged: list[tuple[Node, Node]] = []
    for source in sources:
        if not isinstance(source, MappingNode):
            report(source, "'<<' must merge a mapping or a list of mappings")
            continue
        merged.extend(mapping_pairs(source, report, depth + 1))
    return merged
