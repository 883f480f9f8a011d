"""Subcommands beyond `scan`, one module each: `register(subparsers)` adds the parser and
sets `handler=run`, where `run(args) -> int` returns the exit status."""
