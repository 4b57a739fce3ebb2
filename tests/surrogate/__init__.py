"""Tests of hubtune.surrogate."""
