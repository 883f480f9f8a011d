"""Run history: every scan stored in SQLite, for `diff`, `history`, `--changes-only` and
the diagnosis's memory of what used to answer. See store.py for what is kept and why.

Import from the modules themselves: this package re-exports nothing, so that a scan, which
needs the store and the writer, never loads the diff and timeline code that only the `diff`
and `history` commands use (start-up is on every cron run's critical path).
"""
