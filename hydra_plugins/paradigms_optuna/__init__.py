"""Our Optuna sweeper for Hydra (Hydra loads sweepers only from ``hydra_plugins``)."""
