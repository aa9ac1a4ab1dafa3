"""What a run is, below the training loop and the backends that both use it.

- :mod:`.config`: :class:`TrainConfig`, the one declaration of a run's settings, and the
  :class:`WorkerSpec` a worker rebuilds itself from;
- :mod:`.build`: rule, pre-aggregation and attack names resolved to objects;
- :mod:`.data`, :mod:`.models`: datasets, partitions and models by name;
- :mod:`.worker`: the worker's computation (build the model, compute one gradient, apply a data
  attack or a fault), which the Ray actors, the Lambda handler and the in-process backend run.
"""
from .config import TrainConfig, WorkerSpec

__all__ = ["TrainConfig", "WorkerSpec"]
