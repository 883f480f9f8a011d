"""Probing at scale: the engine's task groups, limiters and deadlines (engine.py), the
pipeline that feeds it targets (pipeline.py), and the sharding of one scan across forked
worker processes (shards.py, shard_worker.py). No classification, no formatting."""
