"""Tests of hubtune.integrations."""
