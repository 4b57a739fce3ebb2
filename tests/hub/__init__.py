"""Tests of hubtune.hub."""
