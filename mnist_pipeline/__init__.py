"""Shared code for the MNIST DVC pipeline's stage scripts (see stages/)."""
