"""scoresde on PyTorch: its networks (nets), its checkpoint format (ckpt), a DistributedDataParallel
trainer (train_ddp) and the parity cases against the Rust implementation (parity).
See README.md, "Scaling out"."""
