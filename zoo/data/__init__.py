"""Datasets, transforms, samplers and dataset preparation for the trainer."""
