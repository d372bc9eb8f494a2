"""Benchmarks, run by `make bench`; never part of the test suite. See bench/validate.py."""
