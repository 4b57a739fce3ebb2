"""Tests of the scripts in the repository's top-level ``benchmarks/`` folder."""
