"""The round checkpoint: per-client state written only for the clients whose state changed,
read back whole, and consistent after a kill between its files."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning_fabric import Fabric

from paradigms.federated.checkpoint import CLIENTS, RoundCheckpoint


def _state(round_: int, variates: dict[int, torch.Tensor]) -> dict:
    return {"round": round_, "params": torch.zeros(3), "variates": variates, "local_norm": {},
            "residuals": {}}  # fmt: skip


def test_a_round_rewrites_only_the_clients_whose_state_changed(tmp_path: Path) -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    checkpoint = RoundCheckpoint(fabric, tmp_path)
    first = _state(1, {0: torch.ones(3), 1: torch.ones(3)})
    checkpoint.save(first)
    files = tmp_path / CLIENTS
    untouched = (files / "variates-0-r1.pt").stat().st_mtime_ns
    second = _state(2, {**first["variates"], 1: torch.full((3,), 2.0), 5: torch.ones(3)})
    checkpoint.save(second)
    names = {p.name for p in files.iterdir()}
    assert names == {"variates-0-r1.pt", "variates-1-r2.pt", "variates-5-r2.pt"}
    assert (files / "variates-0-r1.pt").stat().st_mtime_ns == untouched

    (files / "variates-7-r3.pt").write_bytes(b"a save killed before its server file")
    loaded = RoundCheckpoint(fabric, tmp_path).load()
    assert loaded["round"] == 2 and sorted(loaded["variates"]) == [0, 1, 5]
    assert all(torch.equal(loaded["variates"][c], v) for c, v in second["variates"].items())
    assert not (files / "variates-7-r3.pt").exists(), "a file no checkpoint names is removed"
