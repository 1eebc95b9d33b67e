"""Cascade super-resolution: a stage conditioned on the upsampled low-resolution volume."""
