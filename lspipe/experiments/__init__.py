"""Floor 3, the experiments: one module per experiment of the paper, the claims report on top (docs/architecture.md)."""
