"""Upload compression: the codecs' error and bias, top_k's error feedback, the exact bytes a
round uploads, DP and secure aggregation with compression, resume with residuals, and an int8
run through the CLI that learns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning_fabric import Fabric
from torch import nn

from paradigms.federated.attacks import Attack, Gaussian
from paradigms.federated.checkpoint import RoundCheckpoint
from paradigms.federated.client import FlatModel
from paradigms.federated.compression import Compression, Fp16, Int8, TopK
from paradigms.federated.paradigm import Federated
from paradigms.federated.partition import IID
from paradigms.federated.privacy import ClientDP
from paradigms.federated.server import Simulation, SimulationSettings
from paradigms.federated.strategies import Median, Scaffold, Strategy
from paradigms.runner.errors import ConfigError
from tests.federated.federation import tensor_federation
from tests.helpers import cli, run_dirs, summary

SIZES = [600, 300, 7]  # three tensors of an update
SMALL = [
    "paradigm=federated",
    "backbone=test_resnet",
    "paradigm.progress=false",
    "paradigm/partition=iid",
]


def _update(seed: int = 0) -> torch.Tensor:
    return torch.randn(sum(SIZES), generator=torch.Generator().manual_seed(seed))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_int8_stochastic_rounding_is_unbiased_and_the_same_under_a_seed() -> None:
    x, codec = _update(), Int8()
    draws = torch.stack([codec.roundtrip(x, SIZES, _generator(s)) for s in range(4000)])
    scale = codec.scales(x, SIZES)
    # Each draw is one of the two codes around x / scale: its error has std <= scale / 2.
    assert float((draws.mean(0) - x).abs().div(scale).max()) < 6 * 0.5 / 4000**0.5
    assert torch.equal(codec.roundtrip(x, SIZES, _generator(3)), draws[3]), "seeded"
    assert not torch.equal(draws[0], draws[1])
    codes = draws[0] / scale
    torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-4)
    assert float(codes.round().abs().max()) == 127, "the largest value is the top code"


def test_fp16_and_int8_errors_are_bounded() -> None:
    x = _update()
    half = Fp16().roundtrip(x, SIZES, _generator(0))
    assert torch.all((half - x).abs() <= x.abs() * 2**-11 + 2**-25)  # fp16: 11 bits, subnormals
    int8 = Int8()
    scale = int8.scales(x, SIZES)
    for chunk, peak in zip(scale.split(SIZES), (x[:600], x[600:900], x[900:]), strict=True):
        assert torch.allclose(chunk, peak.abs().max() / 127)  # one scale per tensor
    assert torch.all((int8.roundtrip(x, SIZES, _generator(0)) - x).abs() < scale)
    zeros = torch.zeros(sum(SIZES))
    assert torch.equal(int8.roundtrip(zeros, SIZES, _generator(0)), zeros)


def test_top_k_sends_k_entries_and_error_feedback_carries_the_residual() -> None:
    codec = TopK(fraction=0.01)
    assert [codec.kept(s) for s in SIZES] == [6, 3, 1]
    residual, sent_total, raw_total = None, torch.zeros(sum(SIZES)), torch.zeros(sum(SIZES))
    for round_ in range(6):
        update = _update(round_)
        sent, residual = codec.send(update, residual, SIZES, _generator(0))
        for chunk, k in zip(sent.split(SIZES), [6, 3, 1], strict=True):
            assert int((chunk != 0).sum()) == k
        sent_total += sent
        raw_total += update
    torch.testing.assert_close(sent_total + residual, raw_total)
    assert float(residual.abs().sum()) > 0
    # The largest entry of the update plus the residual is the one sent.
    first, _ = codec.send(_update(9), None, SIZES, _generator(0))
    assert first[:600].abs().argmax() == _update(9)[:600].abs().argmax()
    plain, none = TopK(0.01, error_feedback=False).send(_update(1), residual, SIZES, _generator(0))
    assert none is None and torch.equal(plain, codec.roundtrip(_update(1), SIZES, _generator(0)))


def _simulation(
    compression: Compression,
    strategy: Strategy | None = None,
    privacy: ClientDP | None = None,
    fraction: float = 1.0,
    attack: Attack | None = None,
    download: Compression | None = None,
) -> Simulation:
    """4 clients of 10 samples; the model's tensors: 4x3 weight, 3 bias, 3 + 3 BatchNorm
    weight and bias (21 parameters), 3 + 3 running mean and variance (6 buffers)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3))
    model.num_classes = 3
    x, y = torch.randn(50, 4) * 3, torch.arange(50) % 3
    clients = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 40, 10)]
    settings = SimulationSettings(4, fraction, 1, None, 5, 0.0, 0.0, "average", 64, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    federation = tensor_federation(clients, [], (x[40:], y[40:]), (x[40:], y[40:]))
    return Simulation(FlatModel(model), optimizer, strategy or Strategy(), federation, settings,
                      0, attack=attack, privacy=privacy, compression=compression,
                      download=download)  # fmt: skip


# Per client: the encoded parameter delta, 21 values in 4 tensors (twice that under
# SCAFFOLD: its variate change), the 6 buffers as float32 (24 bytes) and 4 float32 scalars
# (loss x samples, samples, weight, within-clip bit: 16 bytes).
@pytest.mark.parametrize(
    ("compression", "strategy", "privacy", "per_client"),
    [
        (Compression(), None, None, 21 * 4 + 24 + 16),
        (Fp16(), None, None, 21 * 2 + 24 + 16),
        (Fp16(), None, ClientDP(noise_multiplier=0.0), 21 * 2 + 4 + 24 + 16),  # + clip factor
        (Int8(), None, None, 21 + 4 * 4 + 24 + 16),
        (Int8(), Scaffold(), None, 42 + 8 * 4 + 24 + 16),
        # round(0.1 x 12) = 1 of the weight, at least 1 of each 3-value tensor: 4 entries.
        (TopK(0.1), None, None, 4 * (4 + 4) + 24 + 16),
    ],
    ids=["none", "fp16", "fp16-dp", "int8", "int8-scaffold", "top_k"],
)
def test_a_round_uploads_the_exact_encoded_bytes(compression, strategy, privacy, per_client):
    sim = _simulation(compression, strategy, privacy)
    assert sim.tensors[:4] == [12, 3, 3, 3] and sim.B == 6
    _, metrics = sim.step(sim.initial_state(), 0)
    assert metrics["clients/returned"] == 4
    assert metrics["bytes/up"] == 4 * per_client
    assert metrics["bytes/down"] == 4 * 4 * (27 + (21 if strategy else 0))


def test_the_server_aggregates_what_it_decodes() -> None:
    plain, half = _simulation(Compression()), _simulation(Fp16())
    state = plain.initial_state()
    a, _ = plain.step(state, 0)
    b, _ = half.step(state, 0)
    assert not torch.equal(a["params"], b["params"])
    torch.testing.assert_close(a["params"], b["params"], rtol=0, atol=1e-3)
    rows = [half.train_client(state, c, 0, [0, 1, 2, 3]) for c in range(4)]
    deltas = torch.stack([r[: half.P] / r[-3] for r in rows])  # the weighted rows, unweighted
    torch.testing.assert_close(deltas, deltas.half().float(), rtol=1e-6, atol=0)


def test_an_attacker_poisons_its_update_before_it_is_compressed() -> None:
    sim = _simulation(TopK(0.1), Median(), attack=Gaussian(fraction=1.0, std=1.0))
    state = sim.initial_state()
    assert sim.malicious == [0, 1, 2, 3]
    rows = [sim.train_client(state, c, 0, [0, 1, 2, 3]) for c in range(4)]
    assert all(int((r[: sim.P] != 0).sum()) == 4 for r in rows), "the noise, sparsified"


def test_dp_clips_after_compressing_so_the_sent_norm_stays_within_the_clip() -> None:
    clip = 0.05
    sim = _simulation(Int8(), privacy=ClientDP(clip=clip, noise_multiplier=0.0))
    state = sim.initial_state()
    rows = [sim.train_client(state, c, 0, [0, 1, 2, 3]) for c in range(4)]
    norms = [float(r[: sim.P + sim.B].norm()) for r in rows]
    assert all(n <= clip * (1 + 1e-6) for n in norms), norms
    assert all(r[-2] == -0.5 for r in rows), "every update was larger than the clip"


def test_secure_aggregation_refuses_compression(out: Path) -> None:
    process = cli(*SMALL, "paradigm.secure_aggregation=true", "paradigm/compression=int8",
                  check=False, output_root=out)  # fmt: skip
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "error: paradigm.compression='Int8': secure aggregation masks every value of an update "
        "with uniform int64 noise, so a compressed update would still travel as int64. Fix: "
        "paradigm/compression=none (or paradigm.secure_aggregation=false)"
    ]


def test_fedbn_refuses_compression() -> None:
    federated = Federated(Strategy(), IID(), {"name": "momentum"}, norm="local",
                          compression=TopK())  # fmt: skip
    with pytest.raises(ConfigError, match="paradigm/compression=none .or paradigm.norm=average"):
        federated.check()


def test_residuals_are_kept_per_client_and_a_resumed_run_is_exact(tmp_path: Path) -> None:
    straight = _simulation(TopK(0.1), fraction=0.5)
    state = straight.initial_state()
    seen = set()
    for round_ in range(4):
        state, _ = straight.step(state, round_)
        seen |= set(straight.sample(round_))
    assert set(state["residuals"]) == seen, "a residual for each client that has sent"
    assert all(r.shape == (21,) and float(r.abs().sum()) > 0 for r in state["residuals"].values())

    resumed = _simulation(TopK(0.1), fraction=0.5)
    half = resumed.initial_state()
    for round_ in range(2):
        half, _ = resumed.step(half, round_)
    RoundCheckpoint(resumed.fabric, tmp_path).save(half)
    half = RoundCheckpoint(resumed.fabric, tmp_path).load()
    for round_ in range(2, 4):
        half, _ = resumed.step(half, round_)
    assert torch.equal(half["params"], state["params"])
    assert half["residuals"].keys() == state["residuals"].keys()
    assert all(torch.equal(half["residuals"][c], r) for c, r in state["residuals"].items())


def test_an_int8_run_learns_and_uploads_a_quarter(out: Path) -> None:
    # 20 clients, 10 a round: 6 clients, 3 a round, swing too much in the first rounds even
    # uncompressed (val loss 2.6, 20.6, 1.2), so 4 rounds would test the swing.
    process = cli(*SMALL, "paradigm.num_clients=20", "paradigm.rounds=4",
                  "paradigm/compression=int8", output_root=out)  # fmt: skip
    run_dir = run_dirs(out, "federated")[0]
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    per_client = [float(r["bytes/up"]) / float(r["clients/returned"]) for r in rows]
    float32 = float(rows[0]["bytes/down"]) / float(rows[0]["clients/sampled"])
    # 1 byte a parameter (+ 4 a tensor), 4 a BatchNorm statistic: just over a quarter.
    assert all(0.25 < p / float32 < 0.26 for p in per_client), per_client
    assert summary(run_dir)["metrics"]["test/acc"] > 0.3  # chance: 0.1
    assert "uploads compressed: Int8" in " ".join(process.stdout.split())


def test_two_processes_keep_every_residual_on_every_rank(tmp_path: Path) -> None:
    # Median aggregates every row, so 1 and 2 processes give the same model bit for bit; clients
    # change rank between rounds, so a residual left on the rank that made it would show.
    run = [*SMALL, "paradigm.num_clients=6", "paradigm.rounds=3", "paradigm/strategy=median",
           "paradigm/compression=top_k", "paradigm.compression.fraction=0.1", "threads=1"]  # fmt: skip
    cli(*run, output_root=tmp_path / "one")
    process = cli(*run, "trainer=ddp_cpu", output_root=tmp_path / "two")
    assert "2 process(es)" in process.stdout
    one, two = (run_dirs(tmp_path / n, "federated")[0] for n in ("one", "two"))
    fabric = Fabric(accelerator="cpu", devices=1)
    states = [RoundCheckpoint(fabric, d).load() for d in (one, two)]
    assert torch.equal(states[0]["params"], states[1]["params"])
    assert states[0]["residuals"].keys() == states[1]["residuals"].keys()
    assert all(torch.equal(r, states[1]["residuals"][c]) for c, r in states[0]["residuals"].items())


# Per sampled client: the encoded weights (21 values in 4 tensors), the 6 buffers as float32.
@pytest.mark.parametrize(
    ("download", "per_client"),
    [(Fp16(), 21 * 2 + 24), (Int8(), 21 + 4 * 4 + 24)],
    ids=["fp16", "int8"],
)
def test_clients_train_from_the_weights_they_receive_and_the_server_keeps_its_own(
    download: Compression, per_client: int
) -> None:
    sim = _simulation(Compression(), download=download)
    state = sim.initial_state()
    received = sim.received(state, 0)
    assert not torch.equal(received, state["params"]), "the broadcast is lossy"
    new, metrics = sim.step(state, 0)
    assert metrics["bytes/down"] == 4 * per_client
    # A run whose server holds the received weights exactly: its clients start where these
    # did and train alike; the server here adds their mean update to its own exact copy.
    plain = _simulation(Compression())
    expected, _ = plain.step(dict(plain.initial_state(), params=received.clone()), 0)
    torch.testing.assert_close(new["params"], expected["params"] + state["params"] - received)
