"""Hydra config folder of experiments.train (a package so that Hydra finds it by module too)."""
