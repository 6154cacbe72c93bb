"""What every trainer (`videoscene train prior|vae|teacher|distill`) shares.

    config.py       typed JSON configs and the fields and checks every run has
    randomness.py   per-step generators and the epoch order of batches
    checkpoints.py  checkpoint folders, optimizer state as safetensors, resuming (nothing is ever pickled)
    processes.py    the run's processes as accelerate sees them (one, or one per GPU with `accelerate launch`)
    loop.py         `Trainer`: the accelerate step-and-log loop, its checkpoints, logs and progress
    cli.py          the command line every trainer takes

A trainer keeps only what is its own (the model, the loss, the batch, what it exports) and subclasses
`Trainer`; see docs/conventions.md ("Training runs") for the folder every run writes.
"""
