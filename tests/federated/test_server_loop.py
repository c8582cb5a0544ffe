"""The server loop on small real models, in one process: which rank trains which client,
the weighted-sum path against the every-row path, FedBN's per-client evaluation, one
definition of the client loss, and a round with too few clients."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from paradigms.federated.client import FlatModel
from paradigms.federated.processes import assign
from paradigms.federated.server import (
    LOSS_SUM,
    SAMPLES,
    Simulation,
    SimulationSettings,
)
from paradigms.federated.strategies import Median, Strategy
from tests.federated.federation import tensor_federation


def test_clients_go_to_ranks_by_work_the_same_on_every_rank() -> None:
    work = [10, 2, 9, 3, 8, 4]
    ranks = assign(work, 2)
    loads = [sum(w for w, r in zip(work, ranks, strict=True) if r == rank) for rank in (0, 1)]
    assert sorted(loads) == [17, 19]  # client index modulo 2 would give 27 and 9
    assert ranks == assign(list(work), 2)
    assert assign([7, 7, 7], 3) == [0, 1, 2], "ties: the lower client to the lower rank"


def _simulation(
    strategy: Strategy, norm: str = "average", sizes=(6, 14, 10), fabric=None, **settings
):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model.num_classes = 3
    x, y = torch.randn(60, 4) * 3 + 1, torch.arange(60) % 3
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    clients = [(x[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    holdouts = {c: (x[40 + 5 * c : 45 + 5 * c], y[40 + 5 * c : 45 + 5 * c]) for c in range(3)}
    dropout, min_clients = settings.get("client_dropout", 0.0), settings.get("min_clients", 1)
    config = SimulationSettings(1, 1.0, 2, None, 4, dropout, 0.0, norm, 64, 1, min_clients)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    federation = tensor_federation(clients, holdouts, (x[55:], y[55:]), (x[50:55], y[50:55]))
    return Simulation(FlatModel(model), optimizer, strategy, federation, config, 0, fabric)


def test_the_weighted_sum_path_equals_aggregating_every_row() -> None:
    summed = _simulation(Strategy())
    rows = _simulation(Strategy())
    rows.summed = False  # what a strategy that needs every update receives
    assert summed.summed
    a, metrics_a = summed.step(summed.initial_state(), 0)
    b, metrics_b = rows.step(rows.initial_state(), 0)
    torch.testing.assert_close(a["params"], b["params"])
    torch.testing.assert_close(a["buffers"], b["buffers"])
    assert metrics_a["train/client_loss"] == pytest.approx(metrics_b["train/client_loss"])


@pytest.mark.parametrize("strategy", [Strategy(), Median()], ids=["sum", "rows"])
def test_client_loss_is_sample_weighted_on_every_path(strategy: Strategy) -> None:
    sim = _simulation(strategy)
    state = sim.initial_state()
    sampled = sim.sample(0)
    plain = _simulation(Median())  # rows as trained, before any weighting
    rows = [plain.train_client(state, c, 0, sampled) for c in sampled]
    losses = torch.stack([r[LOSS_SUM] / r[SAMPLES] for r in rows])
    samples = torch.stack([r[SAMPLES] for r in rows])
    assert samples.tolist() == [6, 14, 10]
    _, metrics = sim.step(state, 0)
    weighted = float((losses * samples).sum() / samples.sum())
    assert metrics["train/client_loss"] == pytest.approx(weighted, rel=1e-6)
    assert metrics["train/client_loss"] != pytest.approx(float(losses.mean()), rel=1e-4)


def test_fedbn_evaluates_each_client_with_its_own_norm_layers() -> None:
    sim = _simulation(Strategy(), norm="local")
    state, _ = sim.step(sim.initial_state(), 0)
    # Every client's own BatchNorm now answers class 0 whatever the input (scale 0, bias 10).
    assert sorted(state["local_norm"]) == [0, 1, 2], "each client that trained keeps its own"
    own = torch.tensor([0.0, 0.0, 0.0, 10.0, 0.0, 0.0])
    state["local_norm"] = {c: torch.cat([own, v[6:]]) for c, v in state["local_norm"].items()}
    metrics = sim.evaluate(state)
    share_of_class_0 = [float((y == 0).float().mean()) for _, y in sim.federation.holdouts.values()]
    assert metrics["fed/mean_acc"] == pytest.approx(sum(share_of_class_0) / 3)
    assert metrics["fed/worst_acc"] == pytest.approx(min(share_of_class_0))


def test_a_round_with_too_few_updates_keeps_the_model_and_says_so() -> None:
    sim = _simulation(Strategy(), min_clients=3, client_dropout=0.5)
    state = sim.initial_state()
    new, metrics = sim.step(state, 0)
    assert metrics["clients/returned"] < 3
    assert metrics["round/skipped"] == 1
    assert torch.equal(new["params"], state["params"]) and new["round"] == 1


def test_bf16_mixed_trains_the_clients_under_autocast_with_fp32_weights() -> None:
    from lightning_fabric import Fabric

    bf16 = _simulation(Strategy(), fabric=Fabric(accelerator="cpu", precision="bf16-mixed"))
    fp32 = _simulation(Strategy())
    a, metrics = bf16.step(bf16.initial_state(), 0)
    b, _ = fp32.step(fp32.initial_state(), 0)
    assert a["params"].dtype == torch.float32
    assert not torch.equal(a["params"], b["params"]), "the forward passes ran in bf16"
    torch.testing.assert_close(a["params"], b["params"], rtol=0.05, atol=0.05)
    assert bf16.evaluate(a)["val/acc"] >= 0


def test_a_channels_last_model_keeps_its_strides_and_trains_as_a_plain_one() -> None:
    """FlatModel lays each weight out in its own memory order: the rewired model has the exact
    strides it had (kernels choose their format from them), ``unflatten``/``flatten`` invert
    each other, and a step through the flat model moves the weights as the plain model's."""
    from paradigms.runner.accelerate import accelerate

    def model() -> nn.Module:
        torch.manual_seed(0)
        made = timm.create_model("test_convnext", num_classes=10, in_chans=1).double()
        accelerate(made, torch.device("cpu"))  # auto: channels-last (depthwise convolutions)
        return made

    plain, rewired = model(), model()
    strides = {n: p.stride() for n, p in rewired.named_parameters()}
    flat = FlatModel(rewired)
    assert flat.permuted
    assert {n: p.stride() for n, p in rewired.named_parameters()} == strides
    rows = torch.stack([flat.params, 2 * flat.params])
    torch.testing.assert_close(flat.flatten(flat.unflatten(rows)), rows, atol=0, rtol=0)
    named = flat.unflatten(flat.params[None])
    assert all(named[n][0].equal(p) for n, p in plain.named_parameters())

    x, y = torch.randn(8, 1, 32, 32, dtype=torch.float64), torch.arange(8)
    for m in (plain, rewired):
        nn.functional.cross_entropy(m(x), y).backward()
        torch.optim.SGD(m.parameters(), lr=0.1).step()
    pairs = zip(plain.parameters(), rewired.parameters(), strict=True)
    assert max((a - b).abs().max() for a, b in pairs) < 1e-12
    assert (flat.params - _flat(plain, flat)).abs().max() < 1e-12, "the flat vector is the model"


def _flat(model: nn.Module, flat: FlatModel) -> torch.Tensor:
    return flat.flatten({n: p.detach()[None] for n, p in model.named_parameters()})[0]
