"""The vectorized engine: the clients of a group trained at once, as one batched computation.

``torch.func.functional_call`` runs the shared model on each client's weights (rows of the
stacked ``[K, P]`` parameters and ``[K, B]`` buffers viewed per tensor), ``torch.func.grad``
gives each client's gradient and ``torch.func.vmap`` does it for the clients of a step in one
call; SGD with heavy-ball momentum (PyTorch's, the only optimizer accepted) is done by hand on
the stacked rows. It trains what ``LoopEngine`` trains, to float rounding
(``tests/federated/test_engine_vmap.py``), by these choices:

- Batches: a client reads exactly the batches the loop gives it (``_batches`` on its own
  generator, in the same order), and the reader's random augmentation draws from torch's
  global generator seeded from the client's generator as the loop seeds it; each client's
  generator state is swapped in around its reads.
- Unequal batch sizes (the last batch of an epoch, a file reader skipping an unreadable
  file): padding would put padded samples into BatchNorm's batch statistics, so a step
  instead trains the clients whose batches have the same size together, in one vmapped call
  per size (a size only one client has runs as the loop runs it, without torch.func).
  Groups (``clients_per_step`` clients) are made of clients of similar step counts and sizes;
  still, the last batch of a client's epoch usually has a size of its own, so the steps where
  epochs end take several calls.
- Unequal step counts: a client that has done its steps takes part in no further call; its
  rows stay as they are and its loss counts no more samples.
- BatchNorm running statistics: each call passes clones of the clients' buffers, which
  BatchNorm updates in place per client under vmap, and returns them; step counters are
  given as the step index, so a cumulative-average BatchNorm (momentum None) sees what the
  loop's does (the loop zeroes them at every load).
- Random numbers in the forward pass (dropout, stochastic depth) are refused: the loop's
  per-client masks cannot be reproduced under vmap, and other masks would break equality.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from paradigms.federated.client import FlatModel, LocalWork, _batches
from paradigms.federated.engine import Trained
from paradigms.federated.strategies import Strategy
from paradigms.runner.errors import ConfigError

Tensors = dict[str, torch.Tensor]


class VmapEngine:
    """Groups of ``clients_per_step`` clients (None: all of a rank's) trained at once on
    ``flat``'s model under ``autocast``; ``optimizer`` (PyTorch's SGD) gives the learning
    rate, momentum and weight decay of every parameter."""

    def __init__(
        self,
        flat: FlatModel,
        optimizer: torch.optim.Optimizer,
        strategy: Strategy,
        autocast: Callable[[], AbstractContextManager] = nullcontext,
        clients_per_step: int | None = 16,
    ) -> None:
        self.flat, self.model, self.strategy, self.autocast = flat, flat.model, strategy, autocast
        self.clients_per_step = clients_per_step
        self.lr, self.momentum, self.weight_decay = _sgd_settings(flat, optimizer)
        self.counters = [n for n, b in flat.model.named_buffers() if not b.is_floating_point()]
        step = grad(self._loss, has_aux=True)
        self.step = vmap(step, in_dims=(0, 0, 0, 0, None), randomness="error")

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step of two clients on the batch (x, y), discarded: a model that vmap
        cannot run stops here, before any training, in one line."""
        params, buffers = (t.expand(2, -1).clone() for t in (self.flat.params, self.flat.buffers))
        try:
            self._grads(params, buffers, torch.stack([x, x]), torch.stack([y, y]), 0)
        except RuntimeError as error:
            if "vmap" not in str(error):
                raise
            raise _refusal(self.model, error) from None

    def train(
        self,
        params: torch.Tensor,
        buffers: torch.Tensor,
        works: list[LocalWork],
        global_params: torch.Tensor,
        variates: torch.Tensor | None = None,
    ) -> Trained:
        """``LoopEngine.train``'s contract: client k from row k of ``params`` [K, P] and
        ``buffers`` [K, B] for ``works[k].steps`` steps; ``variates`` [K, P] is SCAFFOLD's
        c - c_i per client."""
        params, buffers = params.clone(), buffers.clone()
        losses = torch.zeros(len(works), device=params.device)
        order = sorted(range(len(works)), key=lambda k: (works[k].steps, len(works[k].y)))
        size = self.clients_per_step or len(works)
        self.model.train()
        for start in range(0, len(order), size):
            group = torch.tensor(order[start : start + size], device=params.device)
            rows = _Rows(
                params[group], buffers[group], None if variates is None else variates[group]
            )
            self._train_group(rows, [works[k] for k in group.tolist()], global_params)
            params[group], buffers[group], losses[group] = rows.params, rows.buffers, rows.loss()
        return Trained(params, buffers, losses)

    def _train_group(self, rows: _Rows, works: list[LocalWork], global_params: torch.Tensor):
        streams = [_ClientBatches(work, rows.params.device) for work in works]
        for t in range(max(work.steps for work in works)):
            batches = {k: next(streams[k]) for k, work in enumerate(works) if t < work.steps}
            same_size: dict[int, list[int]] = defaultdict(list)
            for k, (x, _) in batches.items():
                same_size[len(x)].append(k)
            for clients in same_size.values():
                x = torch.stack([batches[k][0] for k in clients])
                y = torch.stack([batches[k][1] for k in clients])
                self._sgd_step(rows, clients, x, y, t, global_params)

    def _sgd_step(
        self,
        rows: _Rows,
        clients: list[int],
        x: torch.Tensor,
        y: torch.Tensor,
        t: int,
        global_params: torch.Tensor,
    ) -> None:
        """One step of PyTorch's SGD (L2 weight decay added to the gradient, then heavy-ball
        momentum) for ``clients``, rows of the group, on their batches x [k, b, ...]."""
        whole = len(clients) == len(rows.params)  # then no gather/scatter copies of the rows
        index = slice(None) if whole else torch.tensor(clients, device=rows.params.device)
        params, momentum = rows.params[index], rows.momentum[index]
        grads, losses, rows.buffers[index] = self._grads(params, rows.buffers[index], x, y, t)
        variates = None if rows.variates is None else rows.variates[index]
        extra = self.strategy.correction(params, global_params, variates)
        if extra is not None:
            grads = grads + extra
        if self.weight_decay is not None:
            grads = grads + self.weight_decay * params
        momentum = momentum * self.momentum + grads
        rows.params[index], rows.momentum[index] = params - self.lr * momentum, momentum
        rows.total[index] += losses.detach().float() * y.shape[1]
        rows.seen[index] += y.shape[1]

    def _grads(
        self, params: torch.Tensor, buffers: torch.Tensor, x: torch.Tensor, y: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row's gradient [k, P], loss [k] and buffers after the step [k, B]."""
        if len(params) == 1:  # the loop's step: vmap made a lone client's ~1.5x slower (CPU)
            return self._plain(params[0], buffers[0], x[0], y[0], t)
        step = torch.tensor(t, device=params.device)
        named = (self.flat.unflatten(params), self.flat.unflatten(buffers, buffers=True))
        grads, (losses, new_buffers) = self.step(*named, x, y, step)
        new_buffers = self.flat.flatten(new_buffers, buffers=True) if new_buffers else buffers
        return self.flat.flatten(grads), losses, new_buffers

    def _plain(
        self, params: torch.Tensor, buffers: torch.Tensor, x: torch.Tensor, y: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``_grads`` of one client as the loop computes it, on the shared model."""
        self.flat.load(params, buffers)
        for counter in self.flat.counters:
            counter.fill_(t)
        self.flat.grads.zero_()
        with self.autocast():
            loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        return self.flat.grads[None].clone(), loss.detach()[None], self.flat.buffers[None].clone()

    def _loss(
        self, params: Tensors, buffers: Tensors, x: torch.Tensor, y: torch.Tensor, step
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, Tensors]]:
        """One client's loss on (x, y) and (aux) its loss and buffers after the forward."""
        buffers = {n: b.clone() for n, b in buffers.items()}
        counters = {n: step.clone() for n in self.counters}
        with self.autocast():
            logits = functional_call(self.model, {**params, **buffers, **counters}, (x,))
            loss = F.cross_entropy(logits, y)
        return loss, (loss.detach(), buffers)


class _Rows:
    """A group's state while it trains: weights, buffers, momentum, SCAFFOLD's variates and
    the loss x samples seen."""

    def __init__(self, params: torch.Tensor, buffers: torch.Tensor, variates):
        self.params, self.buffers, self.variates = params, buffers, variates
        self.momentum = torch.zeros_like(params)
        self.total = torch.zeros(len(params), device=params.device)
        self.seen = torch.zeros(len(params), device=params.device)

    def loss(self) -> torch.Tensor:
        return self.total / self.seen.clamp(min=1)


class _ClientBatches:
    """One client's training batches as the loop reads them: the same index batches, and the
    global generator (augmentation) seeded as ``train_locally`` seeds it, its state kept per
    client between reads."""

    def __init__(self, work: LocalWork, device: torch.device) -> None:
        self.work, self.cuda = work, device if device.type == "cuda" else None
        seed = int(torch.randint(2**62, (1,), generator=work.generator))
        self.indices = _batches(len(work.y), work.batch_size, work.steps, work.generator)
        self.cpu_state = torch.Generator().manual_seed(seed).get_state()
        if self.cuda is not None:
            self.cuda_state = torch.Generator(device=self.cuda).manual_seed(seed).get_state()

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = next(self.indices)
        torch.set_rng_state(self.cpu_state)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda_state, self.cuda)
        batch = self.work.read(self.work.index[index], self.work.y[index])
        self.cpu_state = torch.get_rng_state()
        if self.cuda is not None:
            self.cuda_state = torch.cuda.get_rng_state(self.cuda)
        return batch


def _sgd_settings(flat: FlatModel, optimizer: torch.optim.Optimizer):
    """Per-element learning rate, momentum and weight decay (None when zero everywhere) of
    ``optimizer``'s parameter groups, in the layout of ``flat.params``; a parameter in no
    group does not move (learning rate 0), as under the optimizer."""
    plain = isinstance(optimizer, torch.optim.SGD) and not any(
        g["nesterov"] or g["dampening"] or g["maximize"] for g in optimizer.param_groups
    )
    if not plain:
        raise ConfigError(
            "paradigm.optimizer.name",
            type(optimizer).__name__,
            "paradigm.engine=vmap steps the clients by hand with SGD and heavy-ball momentum",
            "paradigm.optimizer.name=momentum (or paradigm.engine=loop)",
        )
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    settings = flat.params.new_zeros(3, flat.params.numel())
    start = 0
    for p in flat.model.parameters():
        group = group_of.get(id(p))
        if group is not None:
            values = torch.tensor([group["lr"], group["momentum"], group["weight_decay"]])
            settings[:, start : start + p.numel()] = values[:, None].to(settings)
        start += p.numel()
    lr, momentum, weight_decay = settings
    return lr, momentum, weight_decay if weight_decay.any() else None


def _refusal(model: torch.nn.Module, error: RuntimeError) -> ConfigError:
    """The one line for a model that vmap cannot train."""
    reason = str(error).strip().splitlines()[0]
    if "random" in reason:
        return ConfigError(
            "paradigm.engine",
            "vmap",
            f"{type(model).__name__} draws random numbers in training (dropout or stochastic "
            "depth), which the vectorized clients cannot draw as the loop does",
            "backbone.drop_rate=0 backbone.drop_path_rate=0 (or paradigm.engine=loop)",
        )
    return ConfigError(
        "paradigm.engine",
        "vmap",
        f"{type(model).__name__} cannot be trained under torch.func.vmap ({reason})",
        "paradigm.engine=loop",
    )
