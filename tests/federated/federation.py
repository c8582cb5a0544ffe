"""Federations for the server tests, built from tensors in memory."""

from __future__ import annotations

import torch


def tensor_federation(clients, holdouts, test, val=None):
    """A ``Federation`` of clients given as (images, labels) tensors: their images joined
    into one training tensor read by index, as an in-memory datamodule's are."""
    from paradigms.federated.data import TensorImages
    from paradigms.federated.server import Federation

    images = torch.cat([x for x, _ in clients])
    bounds = torch.tensor([0, *(len(y) for _, y in clients)]).cumsum(0).tolist()
    parts = [
        (torch.arange(a, b), y)
        for (a, b), (_, y) in zip(zip(bounds, bounds[1:], strict=False), clients, strict=True)
    ]
    return Federation(parts, TensorImages(images, lambda x: x), holdouts, test, val)
