"""One scan, end to end: the plan decided before anything runs (plan.py), the checks
before it starts (preflight.py), the history session (session.py), the run itself
(runner.py), a shard's whole work in its own process (shard.py) and the coordinator that
merges what the shards send (coordinator.py), results fanned out to the outputs
(fanout.py), the follow-up probes that gather evidence for the diagnosis (followups.py),
and interrupts (interrupts.py)."""
