"""Benchmarks: they print figures and write them to bench/results/; they never run in the default tests."""
