"""Which reader an inventory file needs, when the command line does not say.

`--inventory-format auto` (the default) looks at the name and the first few kilobytes:

- `.ini`, or a first line (past blanks and `#`/`;` comments) that is a section header
  like `[web]` -> Ansible INI. A bracketed IPv6 literal (`[::1]:80`, a target spec) never
  matches Ansible's section pattern, so spec files stay spec files.
- `.json`, or content starting with `{`, whose top level has `_meta` or `all` -> the JSON
  of `ansible-inventory --list`.
- `.yaml`/`.yml` whose top-level keys include `all` and none of reachscan's own
  `hosts`/`groups`/`defaults` -> Ansible YAML; otherwise reachscan's YAML.
- anything else, and `-` (stdin) -> target specs, one per line, as before.

Sniffing reads a bounded prefix, never a whole spec file (those can be huge); only a
JSON candidate is parsed whole.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from scanner.inventory.ansible.ini import COMMENT_MARKERS, SECTION

Format = Literal["specs", "yaml", "ansible", "ansible-json"]
INVENTORY_FORMATS: tuple[str, ...] = ("auto", "specs", "yaml", "ansible", "ansible-json")
"""What `--inventory-format` accepts; `auto` is resolved by `detect_format`."""

SNIFF_BYTES = 64 * 1024
_YAML_SUFFIXES = (".yaml", ".yml")
_NATIVE_YAML_KEYS = frozenset({"hosts", "groups", "defaults"})
_TOP_LEVEL_KEY = re.compile(r"""(["']?)([^\s"'#:][^"':]*?)\1\s*:(?:\s|\Z)""")
_ANSIBLE_JSON_KEYS = ("_meta", "all")


def detect_format(path: str) -> Format:
    """The format of the inventory at `path`; unreadable files go to the spec reader.

    (The spec reader then reports the unreadable file as an error at line 0.)
    """
    if path == "-":
        return "specs"
    lowered = path.lower()
    try:
        with open(path, "rb") as file:
            head = file.read(SNIFF_BYTES)
            if lowered.endswith(".json") or head.lstrip().startswith(b"{"):
                return "ansible-json" if _is_ansible_json(head + file.read()) else "specs"
    except OSError:
        return "specs"
    text = head.decode("utf-8-sig", errors="replace")
    if lowered.endswith(_YAML_SUFFIXES):
        keys = top_level_yaml_keys(text)
        return "ansible" if "all" in keys and not keys & _NATIVE_YAML_KEYS else "yaml"
    if lowered.endswith(".ini") or _first_line_is_section(text):
        return "ansible"
    return "specs"


def ansible_source_kind(path: str, head: str) -> Literal["ini", "yaml"]:
    """INI or YAML, for a file given as `--inventory-format ansible`.

    By suffix first; else YAML if the first meaningful line is `---` or a `key:` at
    column 0 followed by a blank (an INI host `web1:2222` has no blank after its colon).
    """
    if path.lower().endswith(_YAML_SUFFIXES):
        return "yaml"
    if path.lower().endswith(".ini"):
        return "ini"
    line = _first_meaningful_line(head)
    if line is not None and (line.startswith("---") or _TOP_LEVEL_KEY.match(line)):
        return "yaml"
    return "ini"


def top_level_yaml_keys(text: str) -> frozenset[str]:
    """The keys written at column 0 of a block-style YAML mapping (enough to tell formats)."""
    keys = set()
    for line in text.splitlines():
        match = _TOP_LEVEL_KEY.match(line)
        if match is not None:
            keys.add(match[2].strip())
    return frozenset(keys)


def _first_line_is_section(text: str) -> bool:
    line = _first_meaningful_line(text)
    return line is not None and SECTION.match(line) is not None


def _first_meaningful_line(text: str) -> str | None:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(COMMENT_MARKERS):
            return line
    return None


def _is_ansible_json(data: bytes) -> bool:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and any(key in document for key in _ANSIBLE_JSON_KEYS)
