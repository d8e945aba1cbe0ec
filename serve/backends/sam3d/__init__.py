"""The `sam3d` backend: a thin adapter over SAM 3D Objects and its output conversion."""
