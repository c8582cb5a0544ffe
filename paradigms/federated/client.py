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
    """``model`` rewired so that ``params``, ``grads`` and ``buffers`` hold all its state.

    Each tensor occupies its slice of the flat vector in its own memory order and keeps its
    exact strides (``param_layout``/``buffer_layout``: a ``_Slot`` per tensor), so a
    channels-last weight stays channels-last. Every flat vector of a run (updates, SCAFFOLD
    variates, checkpoints) shares that order; ``unflatten``/``flatten`` convert rows of them
    to and from named tensors."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        named = list(model.named_parameters())
        buffers = [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
        # BatchNorm's step counters are reset on every load, so they never differ by history.
        self.counters = [b for b in model.buffers() if not b.is_floating_point()]
        self.param_layout = [_Slot.of(n, p) for n, p in named]
        self.buffer_layout = [_Slot.of(n, b) for n, b in buffers]
        self.params = _gather([p.detach() for _, p in named], self.param_layout)
        self.grads = torch.zeros_like(self.params)
        self.buffers = _gather([b for _, b in buffers], self.buffer_layout)
        grads = self.unflatten(self.grads[None])
        for name, param in self.unflatten(self.params[None]).items():
            p = model.get_parameter(name)
            p.data, p.grad = param[0], grads[name][0]
        for name, buffer in self.unflatten(self.buffers[None], buffers=True).items():
            model.get_buffer(name).data = buffer[0]
        # Whether any weight is stored in another order than its shape's (channels-last).
        self.permuted = any(slot.permuted for slot in self.param_layout)
        self.variance_mask = _mask(
            self.buffer_layout, lambda slot: slot.name.endswith("running_var")
        )
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        norm_ids = {id(p) for m in norms for p in m.parameters(recurse=False)}
        norm_names = {n for n, p in named if id(p) in norm_ids}
        self.norm_mask = _mask(self.param_layout, lambda slot: slot.name in norm_names)

    def load(self, params: torch.Tensor, buffers: torch.Tensor) -> None:
        self.params.copy_(params)
        self.buffers.copy_(buffers)
        for counter in self.counters:
            counter.zero_()

    def unflatten(self, rows: torch.Tensor, buffers: bool = False) -> dict[str, torch.Tensor]:
        """Rows [k, N] of flat parameters (or buffers) as named views [k, *shape]."""
        layout = self.buffer_layout if buffers else self.param_layout
        chunks = rows.split([slot.numel for slot in layout], 1)
        return {slot.name: slot.view(c) for slot, c in zip(layout, chunks, strict=True)}

    def flatten(self, named: dict[str, torch.Tensor], buffers: bool = False) -> torch.Tensor:
        """Named tensors [k, *shape] as rows [k, N] in the flat order."""
        layout = self.buffer_layout if buffers else self.param_layout
        return torch.cat([slot.rows(named[slot.name]) for slot in layout], 1)


@dataclass(frozen=True)
class _Slot:
    """One tensor's place in a flat vector: its name, shape and strides, and its dimensions
    from outermost to innermost in memory (``order``, from the strides)."""

    name: str
    shape: torch.Size
    stride: tuple[int, ...]
    order: tuple[int, ...]

    @classmethod
    def of(cls, name: str, tensor: torch.Tensor) -> _Slot:
        stride = tensor.stride()
        order = tuple(sorted(range(tensor.dim()), key=lambda d: -stride[d]))
        return cls(name, tensor.shape, stride, order)

    @property
    def numel(self) -> int:
        return self.shape.numel()

    @property
    def permuted(self) -> bool:
        moved = [d for d in self.order if self.shape[d] > 1]  # size-1 ones sit anywhere
        return moved != sorted(moved)

    def view(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows [k, numel] as views [k, *shape] with these strides: the exact strides, as
        kernels choose a memory format from them (a depthwise [C, 1, 3, 3] weight too)."""
        if rows.stride(-1) != 1:  # as_strided reads the storage: each row must be dense
            rows = rows.contiguous()
        return rows.as_strided(
            (len(rows), *self.shape), (rows.stride(0), *self.stride), rows.storage_offset()
        )

    def rows(self, tensors: torch.Tensor) -> torch.Tensor:
        """Tensors [k, *shape] as rows [k, numel] in this memory order."""
        return tensors.permute(0, *(1 + d for d in self.order)).reshape(len(tensors), -1)


def _gather(tensors: list[torch.Tensor], layout: list[_Slot]) -> torch.Tensor:
    if not tensors:
        return torch.zeros(0)
    return torch.cat([slot.rows(t[None]) for t, slot in zip(tensors, layout, strict=True)], 1)[0]


def _mask(layout: list[_Slot], chosen: Callable[[_Slot], bool]) -> torch.Tensor:
    """A flat boolean vector, true over the slots ``chosen`` picks."""
    parts = [torch.full((slot.numel,), chosen(slot), dtype=torch.bool) for slot in layout]
    return torch.cat(parts or [torch.zeros(0, dtype=torch.bool)])


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
