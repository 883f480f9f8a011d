"""Static Ansible YAML inventories, read the way Ansible's `yaml` inventory plugin reads them.

    all:
      vars: {reachscan_ports: [22]}
      hosts:
        bastion.example.com:
      children:
        web:
          vars: {reachscan_ports: "80,443", reachscan_label_tier: frontend}
          hosts:
            web[01:20].example.com:
            db1: {ansible_host: 10.0.0.5}

Every top-level key is a group (usually only `all`); a group has `hosts` (host pattern ->
variables or nothing), `vars` and `children` (group name -> group), each of which may
also be a single string, as Ansible allows. The document is composed to nodes so every
error has a line; variable values are then built by PyYAML's safe constructor, typed as
Ansible types them (YAML 1.1: `yes` is true). A value reachscan cannot build - an
`!vault` secret - is kept as opaque and only an error if reachscan needs it.

Ansible warns about and skips keys it does not know; this reader reports them as errors
and treats the group as broken, because a misspelt `var:` would otherwise silently probe
with the wrong ports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode

from scanner.core.errors import InventoryError, SpecError
from scanner.inventory.ansible.ranges import expand_host_pattern
from scanner.inventory.ansible.tree import InventoryTree, OpaqueValue, Variable
from scanner.inventory.yamlnodes import (
    NULL_TAG,
    compose_nodes,
    graph_problem,
    is_null,
    node_origin,
)

_STRING_TAG = "tag:yaml.org,2002:str"
_UNSAFE_TAG = "!unsafe"  # Ansible: a string never templated; to reachscan, a string
_GROUP_KEYS = ("hosts", "vars", "children")
_GROUP_HELP = "a group is a mapping with 'hosts', 'vars' and 'children'"


def parse_yaml_inventory(data: bytes, *, file: str) -> tuple[InventoryTree, list[InventoryError]]:
    """The tree an Ansible YAML inventory declares, and its errors in line order."""
    tree = InventoryTree(file)
    roots = compose_nodes(data, file, single_document=True)
    if isinstance(roots, InventoryError):
        return tree, [roots]
    if not roots:  # an empty document: nothing to read
        return tree, []
    (root,) = roots
    problem = graph_problem(root)
    if problem is not None:
        return tree, [InventoryError(node_origin(file, root), problem)]
    walker = _Walker(file, tree)
    walker.document(root)
    return tree, sorted(walker.errors, key=lambda error: error.origin.line)


@dataclass(slots=True)
class _Walker:
    file: str
    tree: InventoryTree
    errors: list[InventoryError] = field(default_factory=list)
    constructor: SafeConstructor = field(default_factory=SafeConstructor)

    def error(self, node: Node, message: str) -> None:
        self.errors.append(InventoryError(node_origin(self.file, node), message))

    def document(self, root: Node) -> None:
        if not isinstance(root, MappingNode):
            self.error(root, "an Ansible YAML inventory is a mapping of groups, e.g. all: {...}")
            return
        pairs = self.pairs(root)
        for key_node, _ in pairs:
            if isinstance(key_node, ScalarNode) and key_node.value == "plugin":
                self.error(
                    key_node,
                    "this is an inventory plugin's configuration, not an inventory: run"
                    " `ansible-inventory -i FILE --list > inventory.json` and read that",
                )
                return
        for key_node, value_node in pairs:
            name = self.name(key_node, "a group name")
            if name is not None:
                self.group(name, value_node, key_node, parent=None)

    def group(self, name: str, node: Node, key_node: Node, *, parent: str | None) -> None:
        origin = node_origin(self.file, key_node)
        self.tree.add_group(name, origin)
        if parent is not None:
            self.tree.add_child(parent, name, origin)
        if is_null(node):
            return
        if not isinstance(node, MappingNode):
            self.error(node, f"group {name!r} is not a mapping; {_GROUP_HELP}")
            self.tree.mark_group_broken(name)
            return
        for section_key, section_node in self.pairs(node):
            section = self.name(section_key, "a group key")
            if section not in _GROUP_KEYS:
                if section is not None:
                    self.error(
                        section_key,
                        f"unknown key {section!r} in group {name!r}; {_GROUP_HELP}",
                    )
                self.tree.mark_group_broken(name)
                continue
            entries = self.section_entries(section_node, section, name)
            if entries is None:
                self.tree.mark_group_broken(name)
                continue
            for entry_key, entry_value in entries:
                if section == "hosts":
                    self.hosts(entry_key, entry_value, name)
                elif section == "children":
                    child = self.name(entry_key, "a group name")
                    if child is None:
                        self.tree.mark_group_broken(name)
                    else:
                        self.group(child, entry_value, entry_key, parent=name)
                else:
                    variable_name = self.name(entry_key, "a variable name")
                    if variable_name is None:
                        self.tree.mark_group_broken(name)
                    else:
                        variable = Variable(
                            self.value(entry_value), node_origin(self.file, entry_key)
                        )
                        self.tree.set_group_variable(name, variable_name, variable)

    def hosts(self, key_node: Node, value_node: Node, group: str) -> None:
        pattern = self.name(key_node, "a host name")
        if pattern is None:
            return
        try:
            names = expand_host_pattern(pattern)
        except SpecError as error:
            self.error(key_node, str(error))
            return
        origin = node_origin(self.file, key_node)
        for host in names:
            self.tree.add_host(host, group, origin)
        if is_null(value_node):
            return
        if not isinstance(value_node, MappingNode):
            self.error(value_node, f"the variables of {pattern!r} must be a mapping of name: value")
            for host in names:
                self.tree.mark_host_broken(host)
            return
        for variable_key, variable_value in self.pairs(value_node):
            variable_name = self.name(variable_key, "a variable name")
            if variable_name is None:
                for host in names:
                    self.tree.mark_host_broken(host)
                continue
            variable = Variable(self.value(variable_value), node_origin(self.file, variable_key))
            for host in names:
                self.tree.set_host_variable(host, variable_name, variable)

    def section_entries(
        self, node: Node, section: str, group: str
    ) -> list[tuple[Node, Node]] | None:
        """A section's (key, value) pairs; a lone string `x` means `{x: null}` (Ansible)."""
        if is_null(node):
            return []
        if isinstance(node, ScalarNode):
            return [(node, ScalarNode(NULL_TAG, "", node.start_mark, node.end_mark))]
        if not isinstance(node, MappingNode):
            self.error(node, f"'{section}' of group {group!r} must be a mapping")
            return None
        return self.pairs(node)

    def pairs(self, node: MappingNode) -> list[tuple[Node, Node]]:
        """The mapping's pairs with `<<` merges applied (later keys win, as in Ansible)."""
        try:
            self.constructor.flatten_mapping(node)
        except ConstructorError as error:
            self.error(node, f"bad '<<' merge: {error.problem}")
        return list(node.value)

    def name(self, node: Node, what: str) -> str | None:
        """A key that must be a string: YAML would make `1:` a number and `yes:` true."""
        if not isinstance(node, ScalarNode) or is_null(node):
            self.error(node, f"{what} must be a string")
            return None
        if node.tag not in (_STRING_TAG, _UNSAFE_TAG):
            self.error(node, f"{what} {node.value!r} must be a string: put it in quotes")
            return None
        return str(node.value)

    def value(self, node: Node) -> object:
        if isinstance(node, ScalarNode) and node.tag == _UNSAFE_TAG:
            return str(node.value)
        try:
            return self.constructor.construct_object(node, deep=True)
        except ConstructorError:
            # A failed construction leaves the constructor mid-walk; start a fresh one.
            self.constructor = SafeConstructor()
            return OpaqueValue(f"a {node.tag} value")
