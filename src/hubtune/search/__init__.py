"""The search engine shared by ``hubtune run``: loop, executors (inline, Ray), journal."""
