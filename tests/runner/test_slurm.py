"""A SLURM job asks for what the trainer uses: one task per device, the GPUs of a GPU trainer,
and cores for each task's threads and loader workers; a count only the node knows stops the
sweep before its first job. (No SLURM cluster here: the request is checked as composed.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from paradigms.runner.errors import ConfigError
from paradigms.runner.run_dirs import register_resolvers
from paradigms.runner.slurm import check_request
from paradigms.runner.slurm import register_resolvers as register_slurm_resolvers
from tests.helpers import ROOT, cli
from tests.runner.test_sweeps import TINY

REQUEST = ("nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task")


def _request(*overrides: str) -> dict:
    register_resolvers()
    register_slurm_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True
        )
    HydraConfig.instance().set_config(cfg)
    check_request(cfg)
    return {key: cfg.hydra.launcher[key] for key in REQUEST}


@pytest.mark.parametrize(
    ("overrides", "request_"),
    [
        (["trainer=ddp", "trainer.devices=4"], (1, 4, 4, 8)),
        (["trainer=ddp", "trainer.devices=[0,1]", "trainer.num_nodes=2"], (2, 2, 2, 8)),
        (["trainer=ddp_cpu", "threads=3"], (1, 2, 0, 3)),
        (["trainer=gpu", "data=image_folder", "data.root=.", "threads=2"], (1, 1, 1, 4)),
    ],
)
def test_the_request_follows_the_trainer(overrides: list[str], request_: tuple) -> None:
    assert tuple(_request(*overrides).values()) == request_


def test_devices_only_the_node_can_count_are_refused() -> None:
    with pytest.raises(ConfigError, match="trainer.devices=-1"):
        _request("trainer=ddp")


def test_the_sweep_stops_before_its_first_job(out: Path) -> None:
    process = cli(
        *TINY, "hydra/launcher=slurm", "trainer=ddp", "seed=0,1", "-m", output_root=out, check=False
    )
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1].startswith("error: trainer.devices=-1: ")
    assert not out.exists()
