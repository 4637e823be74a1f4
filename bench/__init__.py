"""Benchmarks: each module prints a table of figures and ratios measured in one run.

Not part of the test suite (no ``test_`` names); run from the repository root, e.g.
``.venv/bin/python -m bench.bench_planning``. See ``bench/README.md``.
"""
