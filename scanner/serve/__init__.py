"""The HTTP side of `reachscan serve`, kept apart from what it serves.

`http` is the protocol with no networking in it (bytes in, a request or a refusal out; a
response out as bytes), `server` the one place that touches sockets. What `/metrics`
contains is `scanner.commands.serve`'s business: the server is handed a `respond` function.
"""
