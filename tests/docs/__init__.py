"""Tests that keep docs/ true: its imports, its runnable examples, the layer order of docs/architecture.md."""
