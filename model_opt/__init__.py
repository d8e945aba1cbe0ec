"""Model optimisation for the torch backends: precision, INT8, torch.compile with a
shipped cache, memory planning and artifact packaging. Choices are written into
`gen3d-manifest.json`, which the backends' `load()` reads back (see docs/model_opt.md)."""
