"""Tests of hubtune.search."""
