"""The pure core: values in, values out, no I/O.

The model, the classification of OS outcomes, the diagnosis rules and the evidence they
read, target specs and addresses, ports and the service table, scope and time formatting.
Nothing here touches a socket, a file, a process or an event loop (import-linter keeps it
so: pyproject.toml), which is why most unit tests live here.
"""
