"""The registry probe: what registries serve, read and copied in one process of its own (see README.md)."""
