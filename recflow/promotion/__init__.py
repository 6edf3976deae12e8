"""Continuous training: the evaluation gate, the model registry and the local dry run."""
