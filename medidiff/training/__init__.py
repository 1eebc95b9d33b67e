"""Training: DeepSpeed engine, the one loop, EMA, checkpoints, stage tasks."""
