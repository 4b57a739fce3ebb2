"""Tests of hubtune.finetune."""
