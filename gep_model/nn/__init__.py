"""The GEP networks: event (and image) encoder, temporal backbone, task heads."""
