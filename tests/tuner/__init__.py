"""Tests of hubtune.tuner."""
