"""Benchmarks that print comparable figures (``python bench/bench_<name>.py``), and the code they share."""
