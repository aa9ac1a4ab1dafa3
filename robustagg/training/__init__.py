"""Byzantine-robust training with a parameter server: ``train(TrainConfig(...))``.

Importing this package does not import Ray; the Ray backend imports it when it starts.
"""
from .config import TrainConfig

__all__ = ["TrainConfig"]
