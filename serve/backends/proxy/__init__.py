"""The `proxy` backend: a random-weight network with SAM 3D's compute shape
(model, flow sampling, mesh decoding, weights, optimised-artifact loading)."""
