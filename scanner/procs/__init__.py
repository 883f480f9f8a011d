"""The process beneath everything: forked worker processes and their lifecycle
(worker_pool.py), the frames they speak over pipes (frames.py), and the process's own
resource limits, descriptors and memory (limits.py). Used by the scan's shards and by
the history writer alike, so it knows neither."""
