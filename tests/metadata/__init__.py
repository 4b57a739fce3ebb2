"""Tests of hubtune.metadata."""
