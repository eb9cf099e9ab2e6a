"""Benchmarks: comparisons with fossil and git."""
