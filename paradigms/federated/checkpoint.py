"""The simulation's checkpoint, written after every round so that a killed run resumes where
it stopped.

The server's state (global model, strategy, best round, history) is one file, replaced
atomically. Per-client state (SCAFFOLD's control variates, FedBN's own norm layers,
error-feedback residuals) is one file per client and version under ``checkpoints/clients/``,
written only when that client's state changed: with 1,000 clients and 100 a round, a round
writes 100 small files, not every client's state again. The server file names the version of
each client's file, and superseded files are deleted only after it is replaced, so a kill at
any point leaves a consistent checkpoint (files it does not name are removed on load).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoints/last_round.pt"
CLIENTS = "checkpoints/clients"
PER_CLIENT = ("variates", "local_norm", "residuals")  # state keys: client -> tensor


class RoundCheckpoint:
    """Saves and loads a simulation's state through Fabric; ``save`` runs on every rank
    (rank 0 writes), ``load`` on every rank (each reads the same files)."""

    def __init__(self, fabric: Any, run_dir: Path) -> None:
        self.fabric, self.path, self.clients = fabric, run_dir / CHECKPOINT, run_dir / CLIENTS
        self.written: dict[tuple[str, int], tuple[torch.Tensor, str]] = {}  # what is on disk

    def save(self, state: dict[str, Any]) -> None:
        index: dict[str, dict[int, str]] = {key: {} for key in PER_CLIENT}
        fresh, superseded = {}, []
        for key in PER_CLIENT:
            for client, tensor in state[key].items():
                known = self.written.get((key, client))
                if known is None or known[0] is not tensor:  # state is replaced, never mutated
                    name = f"{key}-{client}-r{state['round']}.pt"
                    if known is not None and known[1] != name:  # never delete what is written now
                        superseded.append(known[1])
                    known = fresh[(key, client)] = (tensor, name)
                index[key][client] = known[1]
        for key, client in [k for k in self.written if k[1] not in state[k[0]]]:
            superseded.append(self.written.pop((key, client))[1])
        server = {k: v for k, v in state.items() if k not in PER_CLIENT}
        partial = self.path.with_suffix(".tmp")
        if self.fabric.is_global_zero:
            self.clients.mkdir(parents=True, exist_ok=True)
            for tensor, name in fresh.values():
                torch.save(tensor, self.clients / name)  # rows own their storage (server.py)
        self.fabric.save(partial, {**server, "client_files": index})
        if self.fabric.is_global_zero:
            os.replace(partial, self.path)
            for name in superseded:
                (self.clients / name).unlink(missing_ok=True)
        self.written.update(fresh)
        self.fabric.barrier()

    def load(self) -> dict[str, Any] | None:
        """The last round's state, or None when there is no checkpoint."""
        if not self.path.is_file():
            return None
        state = self.fabric.load(self.path)
        index = state.pop("client_files")
        for key, files in index.items():
            state[key] = {
                client: torch.load(self.clients / name, weights_only=True)
                for client, name in files.items()
            }
            self.written.update({(key, c): (state[key][c], n) for c, n in files.items()})
        named = {name for files in index.values() for name in files.values()}
        if self.fabric.is_global_zero and self.clients.is_dir():
            for orphan in {p.name for p in self.clients.iterdir()} - named:  # a killed save's
                (self.clients / orphan).unlink()
        self.fabric.barrier()
        return state
