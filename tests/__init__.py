"""hubtune's tests: one folder per package of ``src/hubtune`` (see docs/architecture.md)."""
