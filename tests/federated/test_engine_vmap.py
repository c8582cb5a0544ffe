"""``paradigm.engine=vmap`` trains what the loop engine trains: a real timm model with
BatchNorm on digits, clients of unequal sizes and step counts (finished clients masked, last
batches of several sizes, samples dropped as unreadable files are), augmentation drawn from
torch's global generator, weight decay only where the optimizer applies it, FedAvg, FedProx
and SCAFFOLD. What vmap cannot train stops in one line; a CLI run finishes and learns.

The equality is checked in float64: a freshly initialised ``test_resnet`` on 8x8 digits is
so ill-conditioned (BatchNorm over near-constant channels) that a 1e-7 change of its start
weights moves them by 1e-3 after one loop step, so float32 rounding (vmap's grouped
convolutions add their own) grows to O(1) within a few steps on either engine."""

from __future__ import annotations

import csv

import pytest
import timm
import torch
from sklearn.datasets import load_digits
from torch import nn

from paradigms.federated.client import FlatModel, LocalWork, batches_per_epoch
from paradigms.federated.data import TensorImages
from paradigms.federated.engine import LoopEngine
from paradigms.federated.server import Simulation, SimulationSettings
from paradigms.federated.strategies import FedProx, Scaffold, Strategy
from paradigms.federated.vmap_engine import VmapEngine
from paradigms.models.optim import build_optimizer
from paradigms.runner.accelerate import accelerate
from paradigms.runner.errors import ConfigError
from tests.federated.federation import tensor_federation
from tests.helpers import cli, run_dirs, summary

# Batch size 16: last batches of 5, 2, 7, 13 and 5; 17 samples make one batch of 17; the
# third client straggles (3 of its 4 steps).
SIZES = (37, 53, 23, 61, 17, 37)
STEPS = (6, 8, 3, 8, 2, 6)
MOMENTUM = {"name": "momentum", "lr": 0.01, "weight_decay": 1e-3, "momentum": 0.5}


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    return torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16, torch.tensor(
        digits.target
    )


def _works(read) -> list[LocalWork]:
    _, y = _digits()
    starts = torch.tensor([0, *SIZES]).cumsum(0).tolist()
    return [
        LocalWork(
            read, torch.arange(a, a + n), y[a : a + n], steps, 16, torch.Generator().manual_seed(k)
        )
        for k, (a, n, steps) in enumerate(zip(starts, SIZES, STEPS, strict=False))
    ]


def _model(**kwargs) -> FlatModel:
    torch.manual_seed(0)
    return FlatModel(timm.create_model("test_resnet", num_classes=10, in_chans=1, **kwargs))


def test_the_clients_steps_cover_masking_and_unequal_last_batches() -> None:
    assert [2 * batches_per_epoch(n, 16) for n in SIZES] == [6, 8, 4, 8, 2, 6]
    assert len(set(STEPS)) > 2


def _skipping_reader(images: torch.Tensor):
    """Batches augmented from torch's global generator (which the loop seeds per client), and
    every 11th sample dropped with its label, as ``FileImages`` drops an unreadable file: batches
    of one step differ in size."""
    augmented = TensorImages(images, lambda x: x + 0.1 * torch.randn_like(x))

    def read(index: torch.Tensor, labels: torch.Tensor):
        kept = index % 11 != 0
        return augmented(index[kept], labels[kept])

    return read


@pytest.mark.parametrize("channels_last", [False, True], ids=["standard", "channels-last"])
@pytest.mark.parametrize(
    "strategy", [Strategy(), FedProx(mu=0.1), Scaffold()], ids=["fedavg", "fedprox", "scaffold"]
)
def test_vmap_trains_what_the_loop_trains(strategy: Strategy, channels_last: bool) -> None:
    model = _model().model.double()
    accelerate(model, torch.device("cpu"), channels_last=channels_last)
    flat = FlatModel(model)
    assert flat.permuted is channels_last
    assert any(isinstance(m, nn.BatchNorm2d) for m in flat.model.modules())
    optimizer = build_optimizer(flat.model, MOMENTUM)
    k, p = len(SIZES), flat.params.numel()
    generator = torch.Generator().manual_seed(1)
    start = flat.params + 0.01 * torch.randn(k, p, generator=generator)  # FedBN-like starts
    buffers = flat.buffers + 0.1 * torch.rand(k, flat.buffers.numel(), generator=generator)
    variates = 0.05 * torch.randn(k, p, generator=generator) if strategy.uses_variates else None
    global_params = flat.params.clone()
    images, _ = _digits()
    read = _skipping_reader(images.double())
    vmapped = VmapEngine(flat, optimizer, strategy, clients_per_step=4)
    fast = vmapped.train(start, buffers, _works(read), global_params, variates)
    loop = LoopEngine(flat, optimizer, strategy).train(
        start, buffers, _works(read), global_params, variates
    )
    assert (loop.params - start).abs().amax(1).min() > 1e-2, "every client trained"
    assert (loop.buffers - buffers).abs().amax(1).min() > 1e-3, "BatchNorm statistics moved"
    torch.testing.assert_close(fast.params, loop.params, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.buffers, loop.buffers, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.losses, loop.losses, atol=1e-5, rtol=0)


class _Branchy(nn.Module):
    """A model whose forward pass depends on its data: vmap cannot trace it."""

    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.fc(x) if x.sum() > 0 else self.fc(-x)


def _simulation(model: nn.Module, optimizer=None, fabric=None) -> Simulation:
    flat = FlatModel(model)
    images, labels = _digits()
    clients = [(images[i : i + 40], labels[i : i + 40]) for i in (0, 40)]
    federation = tensor_federation(clients, {}, (images[80:100], labels[80:100]))
    settings = SimulationSettings(1, 1.0, 1, None, 16, 0.0, 0.0, "average", 64, 1, engine="vmap")
    optimizer = optimizer or build_optimizer(model, MOMENTUM)
    return Simulation(flat, optimizer, Strategy(), federation, settings, 0, fabric)


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (_Branchy, "cannot be trained under torch.func.vmap (vmap: It looks like"),
        (lambda: _model(drop_rate=0.5).model, "draws random numbers in training"),
    ],
    ids=["data-dependent", "dropout"],
)
def test_a_model_vmap_cannot_train_stops_in_one_line(model, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        _simulation(model())
    assert str(error.value).startswith("paradigm.engine='vmap': ")
    assert why in str(error.value) and "\n" not in str(error.value)


def test_an_optimizer_other_than_heavy_ball_sgd_stops_in_one_line() -> None:
    model = _model().model
    adam = torch.optim.Adam(model.parameters())
    with pytest.raises(ConfigError, match=r"^paradigm.optimizer.name='Adam': .*momentum"):
        _simulation(model, adam)


def test_bf16_autocast_stops_in_one_line() -> None:
    from lightning_fabric import Fabric

    bf16 = Fabric(accelerator="cpu", precision="bf16-mixed")
    with pytest.raises(ConfigError, match=r"^trainer.precision='bf16-mixed': .*engine=loop\)$"):
        _simulation(_model().model, fabric=bf16)


def test_a_model_vmap_can_train_passes_the_check() -> None:
    sim = _simulation(_model().model)
    assert isinstance(sim.engine, VmapEngine)


def test_a_cli_run_with_vmap_clients_finishes_and_learns(tmp_path) -> None:
    cli(
        "paradigm=federated",
        "backbone=test_resnet",
        "paradigm.engine=vmap",
        "paradigm.rounds=2",
        "paradigm.num_clients=6",
        "paradigm.progress=false",
        "paradigm/strategy=scaffold",
        "paradigm.straggler=0.5",
        "paradigm.clients_per_step=2",
        "backbone.img_size=16",
        "callbacks.accelerate.channels_last=true",  # the input hook stands aside under vmap
        output_root=tmp_path,
    )
    run_dir = run_dirs(tmp_path, "federated")[0]
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"]
    assert float(rows[1]["val/loss"]) < float(rows[0]["val/loss"])
    assert 0 <= summary(run_dir)["metrics"]["test/acc"] <= 1


def test_the_vmap_engine_refuses_other_optimizer_names_before_training(tmp_path) -> None:
    process = cli(
        "paradigm=federated",
        "paradigm.engine=vmap",
        "paradigm.optimizer.name=adamw",
        output_root=tmp_path,
        check=False,
    )
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "error: paradigm.optimizer.name='adamw': paradigm.engine=vmap steps the clients by hand "
        "with SGD and heavy-ball momentum. Fix: paradigm.optimizer.name=momentum (or "
        "paradigm.engine=loop)"
    ]
