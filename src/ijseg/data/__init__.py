"""Data: image I/O and dataset layouts, targets from labels, simulation, augmentation."""
