"""Results: meshes and splats, and their file formats (GLB, PLY, OBJ, USDZ)."""
