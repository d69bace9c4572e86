"""VITS for training: the training forward, its losses, the alignment search, the stochastic duration NLL, the
discriminator, preparation of a pretrained model for training, and vocabulary extension."""
