"""Client-side work on one reused model: load flat global weights, train locally, evaluate.

The model's parameters, gradients and floating-point buffers are views into three flat
vectors, so loading the global model is one ``copy_``, a client's update is one subtraction
and a gradient correction (FedProx, SCAFFOLD) is one ``add_``: no state dicts, no pickling,
no Trainer per client. The loop is a plain PyTorch step over batches that the federation's
reader (``data.py``) makes of the client's sample indices.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from paradigms.federated.data import Reader
from paradigms.federated.strategies import Strategy


class FlatModel:
    """``model`` rewired so that ``params``, ``grads`` and ``buffers`` hold all its state."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        params = list(model.parameters())
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        # BatchNorm's step counters are reset on every load, so they never differ by history.
        self.counters = [b for b in model.buffers() if not b.is_floating_point()]
        self.params = torch.cat([p.detach().reshape(-1) for p in params])
        self.grads = torch.zeros_like(self.params)
        self.buffers = torch.cat([b.reshape(-1) for b in buffers]) if buffers else torch.zeros(0)
        for p, view, grad in zip(
            params, _views(self.params, params), _views(self.grads, params), strict=True
        ):
            p.data = view
            p.grad = grad
        for buffer, view in zip(buffers, _views(self.buffers, buffers), strict=True):
            buffer.data = view
        self.variance_mask = torch.cat(
            [
                torch.full((b.numel(),), name.endswith("running_var"), dtype=torch.bool)
                for name, b in model.named_buffers()
                if b.is_floating_point()
            ]
            or [torch.zeros(0, dtype=torch.bool)]
        )
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        norm_ids = {id(p) for m in norms for p in m.parameters(recurse=False)}
        self.norm_mask = torch.cat(
            [torch.full((p.numel(),), id(p) in norm_ids, dtype=torch.bool) for p in params]
        )

    def load(self, params: torch.Tensor, buffers: torch.Tensor) -> None:
        self.params.copy_(params)
        self.buffers.copy_(buffers)
        for counter in self.counters:
            counter.zero_()


def _views(flat: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [
        v.view_as(t) for v, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)
    ]


@dataclass
class LocalWork:
    """What one client does in a round."""

    read: Reader  # (sample indices, their labels) -> the batch as training sees it
    index: torch.Tensor  # the client's samples, indices into the training set
    y: torch.Tensor  # their labels (a malicious client's as its attack makes them)
    steps: int  # optimizer steps (a straggler does fewer)
    batch_size: int
    generator: torch.Generator  # keyed by (seed, round, client): batch order and dropout


def train_locally(
    flat: FlatModel,
    optimizer: torch.optim.Optimizer,
    work: LocalWork,
    strategy: Strategy,
    global_params: torch.Tensor,
    variate: torch.Tensor | None,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> float:
    """Runs ``work.steps`` SGD steps from the weights loaded in ``flat``; returns the mean
    training loss. The optimizer's state is cleared first: each client starts fresh. The
    forward pass runs under ``autocast`` (mixed precision); weights and updates stay fp32."""
    optimizer.state.clear()
    flat.model.train()
    torch.manual_seed(int(torch.randint(2**62, (1,), generator=work.generator)))
    total, seen = torch.zeros((), device=flat.params.device), 0
    for index in _batches(len(work.y), work.batch_size, work.steps, work.generator):
        flat.grads.zero_()
        x, y = work.read(work.index[index], work.y[index])
        with autocast():
            loss = F.cross_entropy(flat.model(x), y)
        loss.backward()
        extra = strategy.correction(flat.params, global_params, variate)
        if extra is not None:
            flat.grads.add_(extra)
        optimizer.step()
        total += loss.detach().float() * len(y)
        seen += len(y)
    return float(total) / max(seen, 1)


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one pass; a last batch of one sample joins the one before (BatchNorm
    cannot train on a single sample)."""
    return max(1, -(-n // batch_size) - (n % batch_size == 1 and n > batch_size))


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """``steps`` batches of a fresh permutation per pass over the client's data."""
    done, per_epoch = 0, batches_per_epoch(n, batch_size)
    while True:
        chunks = list(torch.randperm(n, generator=generator).split(batch_size))
        if len(chunks) > per_epoch:
            chunks[-2:] = [torch.cat(chunks[-2:])]
        for index in chunks:
            if done == steps:
                return
            yield index
            done += 1


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    top_k: int,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, float]:
    """Accuracy (and top-k accuracy) and mean cross-entropy of ``model`` on (x, y)."""
    model.eval()
    with autocast():
        logits = torch.cat([model(chunk) for chunk in x.split(batch_size)]).float()
    num_classes = logits.shape[1]
    metrics = {
        "acc": float(multiclass_accuracy(logits, y, num_classes, average="micro")),
        "loss": float(F.cross_entropy(logits, y)),
    }
    if 1 < top_k < num_classes:
        metrics[f"acc_top{top_k}"] = float(
            multiclass_accuracy(logits, y, num_classes, top_k=top_k, average="micro")
        )
    return metrics
