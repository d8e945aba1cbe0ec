"""The model in one worker: capacity plan, runtime, batcher, finishing, liveness, masks."""
