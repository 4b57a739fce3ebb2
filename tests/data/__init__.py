"""Tests of hubtune.data."""
