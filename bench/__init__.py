"""Benchmarks for heal's three performance targets (``python -m bench``; see docs/performance.md).

Not part of the test suite: these start real processes, bind 127.0.0.1 ports and take minutes.
"""
