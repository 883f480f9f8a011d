"""The HTTP side of `reachscan serve`, kept apart from what it serves.

`http` is the protocol with no networking in it (bytes in, a request or a refusal out; a
response out as bytes), `server` the one place that touches sockets, `metrics` what
`/metrics` contains (a stored run replayed through `PromSink`, cached): the server is
handed its `respond` function.
"""
