"""The GAN application over the core: training data, the training loop and its run directory,
sampling, quality measures and pictures (`ganparity train`, `ganparity sample`)."""
