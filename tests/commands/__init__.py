"""Tests of hubtune.commands."""
