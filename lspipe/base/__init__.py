"""Floor 0, the vocabulary: what every other module speaks (docs/architecture.md)."""
