"""Producing meta-datasets by real finetuning (``hubtune metadata generate``); ``hubtune.metadata`` only stores and loads."""
