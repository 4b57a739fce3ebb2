"""Readers (and the writer of hubtune's own format) for the meta-dataset layouts."""
