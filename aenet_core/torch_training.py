"""Seed-compatible public module for training (the trainer and datasets land here as they are built)."""
from aenet_core.structure import Structure

__all__ = ["Structure"]
