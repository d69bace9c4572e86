"""VITS for training: the training forward, its losses, the alignment search, the stochastic duration NLL, the
discriminator, preparation of a pretrained model for training, vocabulary extension, and the tiny configuration the
tests and benchmarks train."""
