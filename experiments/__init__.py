"""Experiment runs on top of robustagg: Hydra configs and entry point (``experiments.train``),
sweeps (``experiments.sweep``), reports (``experiments.report``) and benchmark scripts."""
