"""From a dataset to cached training features: sources (the registry of dataset layouts), audio and text screening,
features, splits, the Arrow cache and its report, the collator, and replay of earlier data."""
