"""Benchmarks, run as scripts (`python bench/tokens.py`): a package so they share bench.common."""
