"""Eager PyTorch references: the ground truth of the tests and the baseline of the benchmarks."""
