"""Probing at scale: the engine's task groups, limiters and deadlines (engine.py) and the
pipeline that feeds it targets (pipeline.py). One event loop's worth of work; splitting a
scan into shards is decided in core/sharding.py and run in run/shard.py. No
classification, no formatting."""
