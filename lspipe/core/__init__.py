"""Floor 1, the core: data, models, objectives, recipes, config checks, tables, figures (docs/architecture.md)."""
