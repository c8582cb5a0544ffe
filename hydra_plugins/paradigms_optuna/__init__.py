"""Hydra's Optuna sweeper, made resumable. Hydra loads sweepers only from ``hydra_plugins``."""
