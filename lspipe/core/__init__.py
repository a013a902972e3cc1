"""Floor 1, the core: data, models, objectives, recipes, configuration checks, tables, figures (docs/architecture.md)."""
