"""A scan spread over vantage points with Celery (the optional extra `reachscan[celery]`).

`reachscan worker --broker URL --vantage NAME` runs at each site and consumes that
vantage's queue; `reachscan scan INVENTORY --broker URL --vantages a,b --shards N` (or
`check`) plans N shards for each vantage, sends them, and gathers what comes back:
protocol.py (what travels, as plain JSON values), app.py (the Celery application and its
settings), shard_task.py (a shard run at the vantage: the whole local scan, follow-up
probes included), client.py (the sending, the waiting and the outputs).
"""
