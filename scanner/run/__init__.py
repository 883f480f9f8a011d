"""One scan, end to end: the plan decided before anything runs (plan.py), the checks
before it starts (preflight.py), the history session (session.py), the run itself
(runner.py), results fanned out to the outputs (fanout.py), the follow-up probes that
gather evidence for the diagnosis (followups.py), and interrupts (interrupts.py)."""
