"""The decision service's benchmark (``bench/bench_serving.py``) by job: servers under test, load generator,
request bodies, the Redis snapshot copy, the in-process profiler and the report."""
