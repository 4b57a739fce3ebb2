"""Whole ``hubtune run`` runs through every layer: kill and resume, the run folder, Ray workers."""
