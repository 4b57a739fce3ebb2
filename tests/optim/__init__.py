"""Tests of hubtune.optim."""
