"""Training: the argument dataclasses and their parser, `VitsTrainer` and its parts, callbacks, the amplitude
monitor, checkpoints, signals, the time budget and the Hub upload."""
