"""Command-line tools over the core: `loftr-ros match|eval|record`, and the demo."""
