"""Feast, installed and run by benchmarks/bench_feast.py in virtualenvs of its own."""
