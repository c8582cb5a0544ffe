"""Federated privacy and robustness: secure aggregation's sums, DP clipping and its accounting
(against opacus called directly), and attacks (a fraction of 0 changes nothing)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant
from safetensors.torch import load_file
from torch import nn

from paradigms.federated.client import FlatModel
from paradigms.federated.privacy import ClientDP
from paradigms.federated.secure import SecureAggregation
from paradigms.federated.server import Simulation, SimulationSettings
from paradigms.federated.strategies import Strategy
from paradigms.federated.streams import stream
from tests.federated.federation import tensor_federation
from tests.helpers import cli, run_dirs, summary

SMALL = [
    "paradigm=federated",
    "backbone=test_resnet",
    "paradigm.num_clients=6",
    "paradigm.rounds=2",
    "paradigm.progress=false",
    "paradigm/partition=iid",
]


def _pairs(i: int, j: int) -> torch.Generator:
    return stream(0, 3, i * 100 + j, 5)


def test_secure_sum_equals_the_plain_sum_and_hides_each_update() -> None:
    secure = SecureAggregation(bits=24)
    updates = torch.randn(5, 1000, generator=torch.Generator().manual_seed(0))
    clients = [1, 4, 7, 8, 9]
    masked = torch.stack(
        [secure.mask(u, c, clients, _pairs) for u, c in zip(updates, clients, strict=True)]
    )
    total = secure.unmask(masked.sum(0), clients, [], _pairs)
    encoded = torch.stack([secure.encode(u) for u in updates])
    assert torch.equal(total, secure.decode(encoded.sum(0))), "exact in fixed point"
    torch.testing.assert_close(total, updates.sum(0), rtol=0, atol=2e-6)  # float32 rounding
    for one, update in zip(masked, updates, strict=True):
        assert not torch.allclose(secure.decode(one), update, atol=1.0), "a masked update leaks"


def test_dropped_clients_masks_are_recovered() -> None:
    secure = SecureAggregation(bits=24)
    updates = torch.randn(4, 300, generator=torch.Generator().manual_seed(1))
    clients = [0, 2, 3, 5]
    masked = [secure.mask(u, c, clients, _pairs) for u, c in zip(updates, clients, strict=True)]
    survivors = [0, 3, 5]  # client 2 masked its update, then never sent it
    kept = torch.stack([masked[0], masked[2], masked[3]]).sum(0)
    total = secure.unmask(kept, survivors, [2], _pairs)
    torch.testing.assert_close(total, updates[[0, 2, 3]].sum(0), rtol=0, atol=2e-6)


def _simulation(
    privacy: ClientDP, secure: SecureAggregation | None = None, dropout: float = 0.0
) -> Simulation:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3))
    x, y = torch.randn(50, 4) * 5, torch.arange(50) % 3
    clients = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 40, 10)]
    settings = SimulationSettings(1, 1.0, 3, None, 5, dropout, 0.0, "average", 64, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    federation = tensor_federation(clients, [], (x[40:], y[40:]))
    return Simulation(FlatModel(model), optimizer, Strategy(), federation, settings, 0,
                      privacy=privacy, secure=secure)  # fmt: skip


def test_clipping_bounds_every_client_update() -> None:
    clip = 0.05
    sim = _simulation(ClientDP(clip=clip, noise_multiplier=0.0))
    state = sim.initial_state()
    sampled = sim.sample(0)
    rows = [sim.train_client(state, c, 0, sampled) for c in sampled]
    width = sim.P + sim.B
    norms = [float(r[:width].norm()) for r in rows]
    assert all(n <= clip * (1 + 1e-5) for n in norms), norms
    assert all(r[-2] == -0.5 for r in rows), "every update was larger than the clip"
    # Without noise, the global step is the mean of the clipped updates.
    new, _ = sim.step(state, 0)
    expected = torch.stack([r[: sim.P] for r in rows]).mean(0)
    torch.testing.assert_close(new["params"] - state["params"], expected)


def test_secure_aggregation_gives_the_server_masked_rows_and_the_plain_result() -> None:
    plain = _simulation(ClientDP(clip=10.0, noise_multiplier=0.5))
    secure = _simulation(ClientDP(clip=10.0, noise_multiplier=0.5), SecureAggregation(24))
    state = plain.initial_state()
    row = secure.train_client(state, 0, 0, secure.sample(0))
    assert row.dtype == torch.int64
    sent = plain.train_client(state, 0, 0, [0])
    assert not torch.allclose(secure.secure.decode(row[:-1]), sent[:-1], atol=1.0)
    a, _ = plain.step(state, 0)
    b, _ = secure.step(state, 0)
    torch.testing.assert_close(a["params"], b["params"], rtol=0, atol=1e-6)


def test_adaptive_clip_moves_towards_the_quantile() -> None:
    sim = _simulation(ClientDP(clip=0.05, noise_multiplier=0.0, adaptive=True))
    state, _ = sim.step(sim.initial_state(), 0)
    assert float(state["privacy"]["clip"]) == pytest.approx(0.05 * torch.e**0.1), "all above"


def _share_within(clip_before: torch.Tensor, clip_after: torch.Tensor, dp: ClientDP) -> float:
    """The noised share b the adaptive clip moved by: C' = C exp(-clip_lr (b - target))."""
    return dp.target_quantile - math.log(float(clip_after / clip_before)) / dp.clip_lr


def test_adaptive_clip_tracks_the_quantile_of_the_returned_clients_under_dropout() -> None:
    dp = ClientDP(clip=1e6, noise_multiplier=0.0, adaptive=True)  # every update within
    sim = _simulation(dp, dropout=0.5)
    start = sim.initial_state()
    halves = 0
    for round_ in range(10):
        state, metrics = sim.step(start, round_)
        if metrics["clients/returned"] == 2:  # the expected 4 * (1 - 0.5)
            halves += 1
            share = _share_within(start["privacy"]["clip"], state["privacy"]["clip"], dp)
            assert share == pytest.approx(1.0), "all returned clients were within the clip"
            sampled = sim.sample(round_)
            rows = [sim.train_client(start, c, round_, sampled) for c in sampled]
            sent = torch.stack([r[: sim.P] for r in rows if r[-1] == 1])
            step = state["params"] - start["params"]
            torch.testing.assert_close(step, sent.mean(0))  # the mean of the returned updates
    assert halves > 0


def _release(dp: ClientDP, norms: list[float], seed: int, width: int = 1):
    """What the server releases for clients whose updates have these norms, in the units of
    one client: the noised sum of the clipped updates and the noised clipped count."""
    state, expected = dp.init_state(), 4.0
    sent = [dp.bound(torch.full((width,), n / width**0.5), state) for n in norms]
    total = sum((u for u, _ in sent), torch.zeros(width))
    within = sum(b for _, b in sent)
    mean, after = dp.aggregate(total, within, state, expected, torch.Generator().manual_seed(seed))
    return mean * expected - total, _share_within(state["clip"], after["clip"], dp) * expected


def _measured_noise_multiplier(dp: ClientDP) -> float:
    """The mechanism's noise multiplier from its outputs alone: each query's noise std over its
    sensitivity (one client added, within the clip or not, the noise held fixed), composed as
    independent Gaussian queries compose (z^-2 adds up)."""
    base = [0.1, 3.0]  # one client within C = 1, one not
    update_noise = _release(dp, base, 0, width=100_000)[0]
    counts = torch.tensor([_release(dp, base, seed)[1] for seed in range(3000)])
    count_sensitivity = max(
        abs(_release(dp, [*base, extra], 7)[1] - _release(dp, base, 7)[1]) for extra in (0.5, 5.0)
    )
    return (
        (dp.clip / float(update_noise.std())) ** 2 + (count_sensitivity / float(counts.std())) ** 2
    ) ** -0.5


def _subsampled_gaussian_epsilon(z: float, q: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps, from the closed form of their
    RDP at integer orders a (Mironov, Talwar and Zhang 2019, Section 3.3):
    log(sum_k C(a, k) (1 - q)^(a - k) q^k exp((k^2 - k) / (2 z^2))) / (a - 1), converted to
    (epsilon, delta) as opacus converts (Balle et al. 2020)."""
    best = math.inf
    for a in range(2, 128):
        terms = [
            math.lgamma(a + 1) - math.lgamma(k + 1) - math.lgamma(a - k + 1)
            + (a - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * z * z)
            for k in range(a + 1)
        ]  # fmt: skip
        top = max(terms)
        rdp = steps * (top + math.log(sum(math.exp(t - top) for t in terms))) / (a - 1)
        best = min(best, rdp + math.log1p(-1 / a) - (math.log(delta) + math.log(a)) / (a - 1))
    return best


@pytest.mark.parametrize("count_stddev", [1.0, 2.0])
def test_adaptive_clipping_reports_the_epsilon_of_its_measured_noise(count_stddev) -> None:
    dp = ClientDP(noise_multiplier=1.0, adaptive=True, count_stddev=count_stddev)
    z = _measured_noise_multiplier(dp)
    assert z == pytest.approx(1.0, rel=0.02), "the whole mechanism is at noise_multiplier"
    direct = RDPAccountant()
    direct.history = [(z, 0.5, 30)]
    assert dp.epsilon(30, 0.5) == pytest.approx(direct.get_epsilon(1e-5), rel=0.05)
    closed_form = _subsampled_gaussian_epsilon(z, 0.5, 30, 1e-5)
    assert dp.epsilon(30, 0.5) == pytest.approx(closed_form, rel=0.05)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def test_epsilon_printed_equals_opacus_accountant(out: Path) -> None:
    process = cli(*SMALL, "paradigm/privacy=dp", "paradigm.privacy.noise_multiplier=1.3",
                  "paradigm.secure_aggregation=true", "paradigm.client_dropout=0.3",
                  output_root=out)  # fmt: skip
    run_dir = run_dirs(out, "federated")[0]
    accountant = RDPAccountant()
    for row in _rows(run_dir):
        accountant.step(noise_multiplier=1.3, sample_rate=3 / 6)
        assert float(row["privacy/epsilon"]) == accountant.get_epsilon(1e-5)
        assert f"eps {accountant.get_epsilon(1e-5):.3f}" in process.stdout
    assert summary(run_dir)["metrics"]["privacy/epsilon"] == accountant.get_epsilon(1e-5)
    assert "secure aggregation" in process.stdout


def _model(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dirs(out, "federated")[0] / "model.safetensors"))


def test_an_attacker_fraction_of_zero_changes_nothing(tmp_path: Path) -> None:
    cli(*SMALL, output_root=tmp_path / "clean")
    cli(*SMALL, "paradigm/attack=sign_flip", "paradigm.attack.fraction=0",
        output_root=tmp_path / "zero")  # fmt: skip
    attacked = cli(*SMALL, "paradigm/attack=sign_flip", output_root=tmp_path / "attacked")
    clean, zero = _model(tmp_path / "clean"), _model(tmp_path / "zero")
    assert all(clean[k].equal(zero[k]) for k in clean)
    # model.safetensors is the round selected on validation: the attack shows in the rounds.
    curve = lambda out: [r["val/acc"] for r in _rows(run_dirs(out, "federated")[0])]  # noqa: E731
    assert curve(tmp_path / "attacked") != curve(tmp_path / "clean")
    assert "malicious clients (SignFlip): [" in attacked.stdout


def test_secure_aggregation_refuses_a_robust_strategy(out: Path) -> None:
    process = cli(*SMALL, "paradigm.secure_aggregation=true", "paradigm/strategy=median",
                  check=False, output_root=out)  # fmt: skip
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "error: paradigm.strategy='Median': secure aggregation gives the server only the sum of "
        "the client updates; Median needs each one. Fix: paradigm/strategy=fedavg (or fedprox, "
        "fedavgm, fedadam, fedyogi, fedadagrad)"
    ]
