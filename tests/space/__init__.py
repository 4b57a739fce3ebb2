"""Tests of hubtune.space."""
