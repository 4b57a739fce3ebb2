"""Tests of hubtune.bench."""
