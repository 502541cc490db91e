"""The router: a Flax MLP over state features, its jitted trainer, metrics, checkpoints and IL training."""
