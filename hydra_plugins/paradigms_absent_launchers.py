"""Configs that stand in for launcher plugins that are not installed.

``conf/hydra/launcher/{parallel,slurm,slurm_local}.yaml`` extend the plugins' own configs
(``joblib``, ``submitit_slurm``, ``submitit_local``), which exist only once the plugin is
installed; without it Hydra stops at composition with "Could not find 'hydra/launcher/joblib'".
Hydra imports this module while it looks for plugins, before it composes, and here registers
each missing config as just the plugin's ``_target_``: the sweep then composes, and the check
before its first job (paradigms/runner/extras.py) names the extra to install.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from paradigms.runner.extras import installed

_CONFIGS = {
    "hydra_plugins.hydra_joblib_launcher": {
        "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    },
    "hydra_plugins.hydra_submitit_launcher": {
        "submitit_slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        "submitit_local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    },
}

for package, configs in _CONFIGS.items():
    if not installed(package):
        for name, target in configs.items():
            ConfigStore.instance().store(
                group="hydra/launcher", name=name, node={"_target_": target}, provider="paradigms"
            )
