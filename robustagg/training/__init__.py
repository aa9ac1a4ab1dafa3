"""Byzantine-robust training with a parameter server: ``train(TrainConfig(...))``.

    from robustagg.training import TrainConfig, train
    result = train(TrainConfig(rule="krum", attack="alie", rounds=200))
    result.final_accuracy, result.history, result.output_dir

Importing this package does not import Ray; ``train`` imports it when the backend is Ray.
"""
from robustagg.run.config import TrainConfig

from .loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
