"""Benchmarks: latency, barge-in, load and STT accuracy, printed as JSON.

Speed targets live here, not in pass/fail tests: every figure in docs/benchmarks.md comes
from one of these commands.
"""
