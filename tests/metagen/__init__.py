"""Tests of hubtune.metagen."""
