"""Training: the wiring of a run, the Trainer and its callbacks, train step, optimizer, schedule, freezing,
checkpoints, the run folder and progress."""
