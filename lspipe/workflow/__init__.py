"""Floor 4, the workflow glue: the plan of a configuration, where its validation starts (docs/architecture.md)."""
