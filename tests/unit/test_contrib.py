"""The recipes in contrib/: every `reachscan` command line they write is parsed by
reachscan's own parser, so a recipe cannot name an option or a value that does not exist;
the YAML files are valid YAML."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scanner.cli import build_parser
from scanner.commands import check

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
RECIPES = sorted(path for path in CONTRIB.rglob("*") if path.is_file() and path.name != "README.md")
COMMAND = re.compile(r"reachscan (scan|merge|compare|check|worker)\b[^;&|\n]*")
SHELL_VALUE = re.compile(r"\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z_0-9]*")


def texts_of(path: Path) -> Iterator[str]:
    """The text a recipe's commands are written in: every string of a YAML file (a folded
    block is one line there), the lines of anything else (backslash continuations
    joined, comment markers dropped: commented commands must be right too)."""
    if path.suffix in (".yaml", ".yml"):
        for document in yaml.safe_load_all(path.read_text()):
            yield from _strings(document)
        return
    joined = path.read_text().replace("\\\n", " ")
    for line in joined.splitlines():
        yield line.lstrip("# ")


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def commands_of(path: Path) -> list[list[str]]:
    found = []
    for text in texts_of(path):
        for match in COMMAND.finditer(text):
            # Shell and scheduler values stand for something real: a plain word will do
            # (GNU parallel's {} is a shard index, Nomad's ${...} a name).
            command = SHELL_VALUE.sub("1", match.group(0)).replace("{}", "0")
            argv = shlex.split(command)[1:]
            if any(word.startswith("--") for word in argv):  # a command, not prose
                found.append(argv)
    return found


def test_every_recipe_is_listed_in_the_readme() -> None:
    readme = (CONTRIB / "README.md").read_text()
    for recipe in RECIPES:
        assert recipe.name in readme, recipe


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: str(path.relative_to(CONTRIB)))
def test_every_command_line_in_a_recipe_parses(recipe: Path) -> None:
    commands = commands_of(recipe)
    assert commands or recipe.suffix == ".timer", f"{recipe} runs no reachscan command"
    for argv in commands:
        if argv[0] == "check":
            parser = check.NagiosArgumentParser(prog="reachscan check")
            check.add_check_arguments(parser)
            parser.parse_args(argv[1:])
        else:
            build_parser(argv[0]).parse_args(argv)
