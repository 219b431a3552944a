"""Training runs: optimizers (with EMA), checkpoints, samples, callbacks and the run itself."""
