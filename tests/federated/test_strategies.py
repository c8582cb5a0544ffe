"""Each strategy's aggregate on hand-made client updates, against its formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paradigms.federated.client import FlatModel
from paradigms.federated.server import LOSS_SUM, Simulation, SimulationSettings
from paradigms.federated.strategies import (
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedProx,
    FedYogi,
    Krum,
    Median,
    Scaffold,
    Strategy,
    TrimmedMean,
    Updates,
)
from paradigms.runner.errors import ConfigError
from paradigms.runner.validation import check_node
from tests.federated.federation import tensor_federation

W = torch.tensor([1.0, -2.0, 0.5])
D = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, -1.0], [-2.0, 4.0, 0.0], [10.0, -10.0, 10.0]])
N = torch.tensor([1.0, 3.0, 2.0, 2.0])


def step(strategy, deltas=D, weights=N, state=None):
    state = strategy.init_state(W) if state is None else state
    return strategy.aggregate(W, Updates(deltas, weights), state)


def test_fedavg_is_the_sample_weighted_mean() -> None:
    new, _ = step(Strategy(server_lr=0.5))
    expected = W + 0.5 * (N[:, None] * D).sum(0) / N.sum()
    torch.testing.assert_close(new, expected)


def test_fedprox_adds_the_proximal_gradient() -> None:
    w = torch.tensor([2.0, 0.0, 1.0])
    torch.testing.assert_close(FedProx(mu=0.1).correction(w, W, None), 0.1 * (w - W))
    assert Strategy().correction(w, W, None) is None


def test_fedavgm_accumulates_server_momentum() -> None:
    strategy = FedAvgM(momentum=0.9, server_lr=1.0)
    mean = (N[:, None] * D).sum(0) / N.sum()
    w1, state = step(strategy)
    torch.testing.assert_close(w1, W + mean)
    w2, _ = strategy.aggregate(w1, Updates(D, N), state)
    torch.testing.assert_close(w2, w1 + (0.9 * mean + mean))


@pytest.mark.parametrize("cls", [FedAdam, FedYogi, FedAdagrad])
def test_adaptive_servers_follow_reddi_et_al(cls) -> None:
    b1, b2, tau, lr = 0.9, 0.99, 1e-3, 0.01
    new, state = step(cls(server_lr=lr, beta1=b1, beta2=b2, tau=tau))
    g = (N[:, None] * D).sum(0) / N.sum()
    m = (1 - b1) * g
    v0 = torch.full_like(W, tau**2)
    v = {
        FedAdam: b2 * v0 + (1 - b2) * g**2,
        FedYogi: v0 - (1 - b2) * g**2 * torch.sign(v0 - g**2),
        FedAdagrad: v0 + g**2,
    }[cls]
    torch.testing.assert_close(state["m"], m)
    torch.testing.assert_close(state["v"], v)
    torch.testing.assert_close(new, W + lr * m / (v.sqrt() + tau))


def test_scaffold_moves_c_by_the_mean_variate_change_times_s_over_n() -> None:
    strategy = Scaffold()
    state = strategy.init_state(W)
    variates = torch.ones(4, 3)
    new, state = strategy.aggregate(W, Updates(D, N, variates, num_clients=8), state)
    torch.testing.assert_close(state["c"], torch.full((3,), 4 / 8))
    torch.testing.assert_close(new, W + (N[:, None] * D).sum(0) / N.sum())
    c_minus_ci = torch.tensor([0.5, 0.0, -1.0])
    torch.testing.assert_close(strategy.correction(W, W, c_minus_ci), c_minus_ci)


def test_median_and_trimmed_mean_are_coordinate_wise() -> None:
    new, _ = step(Median())
    torch.testing.assert_close(new, W + torch.tensor([2.0, 1.0, 1.5]))
    new, _ = step(TrimmedMean(beta=0.25))
    torch.testing.assert_close(new, W + torch.tensor([2.0, 1.0, 1.5]))
    new, _ = step(TrimmedMean(beta=0.0))
    torch.testing.assert_close(new, W + D.mean(0))


def test_krum_discards_the_outlier() -> None:
    close = torch.tensor([[1.0, 1.0, 1.0], [1.1, 0.9, 1.0], [0.9, 1.0, 1.1], [1.0, 1.1, 0.9]])
    deltas = torch.cat([close, torch.tensor([[50.0, -50.0, 50.0]])])
    krum = Krum(byzantine=1, num_selected=1)
    scores = krum.scores(deltas)
    # Score: the summed squared distances to the K - f - 2 = 2 nearest others.
    distances = torch.cdist(deltas, deltas).square()
    expected = torch.stack([row.sort().values[1:3].sum() for row in distances])
    torch.testing.assert_close(scores, expected)
    new, _ = step(krum, deltas, torch.ones(5))
    torch.testing.assert_close(new, W + deltas[scores.argmin()])
    new, _ = step(Krum(byzantine=1, num_selected=4), deltas, torch.ones(5))
    torch.testing.assert_close(new, W + close.mean(0))
    with pytest.raises(ConfigError, match="byzantine"):
        Krum(byzantine=2).check(clients_per_round=6)


def test_non_finite_client_updates_are_rejected_and_the_round_goes_on() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    flat = FlatModel(model)
    x = torch.randn(40, 4)
    y = torch.arange(40) % 3
    poisoned = x[:10].clone()
    poisoned[0, 0] = float("nan")
    clients = [(poisoned, y[:10]), (x[10:20], y[10:20]), (x[20:30], y[20:30])]
    settings = SimulationSettings(1, 1.0, 1, None, 5, 0.0, 0.0, "average", 64, 1)
    sim = Simulation(
        flat, torch.optim.SGD(model.parameters(), lr=0.1), Strategy(),
        tensor_federation(clients, [], (x[30:], y[30:])), settings, seed=0,
    )  # fmt: skip
    start = sim.initial_state()
    state, metrics = sim.step(start, 0)
    assert metrics["clients/returned"] == 3 and metrics["clients/rejected"] == 1
    assert torch.isfinite(state["params"]).all()
    assert not torch.equal(state["params"], start["params"]), "the finite updates were applied"


@pytest.mark.parametrize(
    "strategy", [Median(), TrimmedMean(beta=0.2), Krum(byzantine=1)], ids=lambda s: type(s).__name__
)
def test_robust_strategies_keep_an_outlier_out_of_the_batchnorm_statistics(strategy) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3))
    x, y = torch.randn(60, 4), torch.arange(60) % 3
    clients = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 50, 10)]
    clients[4] = (clients[4][0] * 1e4, clients[4][1])  # huge running statistics, 10 samples
    settings = SimulationSettings(1, 1.0, 1, None, 5, 0.0, 0.0, "average", 64, 1)
    sim = Simulation(
        FlatModel(model), torch.optim.SGD(model.parameters(), lr=0.01), strategy,
        tensor_federation(clients, [], (x[50:], y[50:])), settings, seed=0,
    )  # fmt: skip
    start = sim.initial_state()
    rows = torch.stack([sim.train_client(start, c, 0, sim.sample(0)) for c in range(5)])
    honest = rows[:4, sim.P : sim.P + sim.B]
    assert (rows[4, sim.P : sim.P + sim.B] > 1e3 * honest.abs().max()).any(), "an outlier"
    state, _ = sim.step(start, 0)
    assert (honest.min(0).values <= state["buffers"]).all()
    assert (state["buffers"] <= honest.max(0).values).all()
    fedavg = Strategy().combine_buffers(rows[:, sim.P : sim.P + sim.B], rows[:, -3])
    assert (fedavg > honest.max(0).values).any(), "the plain mean takes the outlier in"


def test_krum_with_fewer_than_f_plus_3_updates_still_selects() -> None:
    # Dropouts left 3 of the sampled clients: K - f - 2 = 0 for f = 1, so the score is the
    # distance to the nearest other (Flower's max(1, K - f - 2)), never the plain mean.
    close = torch.tensor([[1.0, 1.0, 1.0], [1.1, 0.9, 1.0]])
    deltas = torch.cat([torch.tensor([[50.0, -50.0, 50.0]]), close])
    new, _ = step(Krum(byzantine=1), deltas, torch.ones(3))
    assert any(torch.allclose(new, W + c) for c in close), new
    new, _ = step(Krum(byzantine=1, num_selected=2), deltas, torch.ones(3))
    torch.testing.assert_close(new, W + close.mean(0))
    lone = torch.tensor([[2.0, 0.0, -1.0]])
    torch.testing.assert_close(step(Krum(byzantine=1), lone, torch.ones(1))[0], W + lone[0])


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_scaffold_variate_is_the_clients_mean_gradient_under_client_momentum(momentum) -> None:
    # Full-batch steps at a small learning rate stay near the global weights, so option II's
    # c_i+ (here c = c_i = 0) must be the client's gradient there, whatever the momentum.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(30, 4), torch.arange(30) % 3
    settings = SimulationSettings(1, 1.0, 1, 6, 20, 0.0, 0.0, "average", 64, 1)  # 6 steps
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=momentum)
    sim = Simulation(
        FlatModel(model), optimizer, Scaffold(), tensor_federation([(x[:20], y[:20])], [], (x[20:], y[20:])),
        settings, seed=0,
    )  # fmt: skip
    start = sim.initial_state()
    row = sim.train_client(start, 0, 0, [0])
    sim.flat.grads.zero_()
    sim.flat.load(start["params"], start["buffers"])
    nn.functional.cross_entropy(model(x[:20]), y[:20]).backward()
    gradient = sim.flat.grads.clone()
    variate = row[sim.P + sim.B : LOSS_SUM]
    torch.testing.assert_close(variate, gradient, rtol=1e-2, atol=1e-4)


def test_effective_steps_of_heavy_ball() -> None:
    assert Scaffold.effective_steps(4, 0.0) == 4
    assert Scaffold.effective_steps(1, 0.5) == 1  # the first step is a plain step
    # 2 steps at b = 0.5: the second moves by (1 + b) g, so 2.5 plain steps.
    assert Scaffold.effective_steps(2, 0.5) == pytest.approx(2.5)


def test_scaffold_with_an_optimizer_other_than_heavy_ball_stops_in_one_line() -> None:
    node = {
        "_target_": "paradigms.federated.paradigm.Federated",
        "strategy": {"_target_": "paradigms.federated.strategies.Scaffold", "server_lr": 1.0},
        "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9},
    }
    with pytest.raises(ConfigError) as error:
        check_node(node, "paradigm")
    assert (error.value.key, error.value.value) == ("paradigm.optimizer.name", "adamw")
    check_node({**node, "optimizer": {**node["optimizer"], "name": "momentum"}}, "paradigm")


def test_fedyogi_step_against_values_computed_by_hand() -> None:
    # One client, update g = (0.2, 0.05); beta1 = beta2 = 0.5, tau = 0.1, so v0 = tau^2 = 0.01.
    # Yogi: v = v0 - (1 - beta2) g^2 sign(v0 - g^2):
    #   g1^2 = 0.04 > v0:   v = 0.01 + 0.5 * 0.04   = 0.03     (Adam: 0.025, flipped sign: -0.01)
    #   g2^2 = 0.0025 < v0: v = 0.01 - 0.5 * 0.0025 = 0.00875  (Adam: 0.00625, flipped: 0.01125)
    # m = 0.5 g = (0.1, 0.025); step = m / (sqrt(v) + tau):
    #   0.1 / (0.173205 + 0.1) = 0.366025,  0.025 / (0.093541 + 0.1) = 0.129171
    yogi = FedYogi(server_lr=1.0, beta1=0.5, beta2=0.5, tau=0.1)
    weights = torch.tensor([1.0, -2.0])
    update = Updates(torch.tensor([[0.2, 0.05]]), torch.ones(1))
    new, state = yogi.aggregate(weights, update, yogi.init_state(weights))
    torch.testing.assert_close(state["v"], torch.tensor([0.03, 0.00875]))
    torch.testing.assert_close(new, torch.tensor([1.366025, -1.870829]))
