"""Floor 2, the engine and its file formats: training, activation dumps, probe traces (docs/architecture.md)."""
