"""The LightningModule of a multi-task run: per-task losses, metrics and loss weighting.

Loss-based weightings use automatic optimization. Gradient-based ones (``weighting.manual``)
use manual optimization: one ``torch.autograd.grad`` per task on the shared parameters (and
that task's head), averaged across DDP ranks by hand (Lightning keeps DDP's own reducer out of
manual optimization until ``manual_backward``, which is not called), combined identically on
every rank, clipped with ``clip_gradients`` and stepped; the run's non-finite guard is asked
first, as ``manual_backward`` would. Autocast (bf16) comes from the
trainer's precision plugin around ``training_step``.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from paradigms.models.optim import build_optimizer, build_schedule
from paradigms.multitask.model import MultiTaskModel
from paradigms.multitask.tasks import Task
from paradigms.multitask.weighting import Weighting
from paradigms.runner.guards import NonFiniteGuard

HISTORY = 2  # epochs of mean task losses kept for the weighting (DWA looks two back)


class MultiTaskModule(pl.LightningModule):
    """Logs ``split/<task>/<metric>``, ``split/<task>/loss``, ``split/loss`` (unweighted sum),
    ``split/score`` (mean primary metric, sign-corrected by direction; what checkpoints select
    on) and ``train/weight/<task>`` every step."""

    def __init__(
        self,
        model: MultiTaskModel,
        tasks: list[Task],
        weighting: Weighting,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        clip: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.tasks = tasks
        self.weighting = weighting
        self.optimizer_cfg = optimizer
        self.scheduler_cfg = scheduler
        self.clip = clip or {}
        self.automatic_optimization = not weighting.manual
        weighting.layer = model.last_shared_layer()
        self.metrics = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {t.name: t.metric_collection(f"{split}/{t.name}/") for t in tasks}
                )
                for split in ("val", "test")
            }
        )
        count = len(tasks)
        # Persistent sums of this epoch's losses, so a resumed run computes the same history.
        self.register_buffer("loss_sums", torch.zeros(count))
        self.register_buffer("loss_counts", torch.zeros(count))
        self.register_buffer("loss_history", torch.zeros(HISTORY, count))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(x)

    def _losses(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        outputs = self(batch[0])
        losses = [
            t.loss_value(outputs[t.name], y) for t, y in zip(self.tasks, batch[1:], strict=True)
        ]
        return torch.stack(losses).float(), outputs

    def _history(self) -> torch.Tensor:
        return self.loss_history[HISTORY - min(int(self.epochs_seen), HISTORY) :]

    def on_train_epoch_start(self) -> None:
        if not self.loss_counts.any():  # nothing trained since the last update
            return
        means = self.loss_sums / self.loss_counts
        self.loss_history.copy_(torch.cat([self.loss_history[1:], means[None]]))
        self.epochs_seen += 1
        self.loss_sums.zero_()
        self.loss_counts.zero_()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        losses, _ = self._losses(batch)
        history = self._history()
        # Averaged over ranks, so every rank keeps the same history (DDP broadcasts buffers).
        mean_losses = self.trainer.strategy.reduce(losses.detach(), reduce_op="mean")
        if self.automatic_optimization:
            total = self.weighting.loss(losses, history)
        else:
            total = self._manual_step(losses, mean_losses, history)
        if torch.isfinite(mean_losses).all():  # a skipped non-finite step leaves no trace
            self.loss_sums += mean_losses
            self.loss_counts += 1
        size = len(batch[0])
        weights = self.weighting.weights(history).detach()
        logged = {f"train/{t.name}/loss": losses[i] for i, t in enumerate(self.tasks)}
        logged |= {f"train/weight/{t.name}": weights[i] for i, t in enumerate(self.tasks)}
        self.log_dict(logged, on_step=True, on_epoch=True, batch_size=size)
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        return total

    def _task_gradients(
        self, losses: torch.Tensor, shared: list[nn.Parameter], heads: list[list[nn.Parameter]]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Each task's gradient on the shared parameters (rows of T x P) and on its own head."""
        rows, head_grads = [], []
        for i, head in enumerate(heads):
            params = shared + head
            grads = torch.autograd.grad(
                losses[i], params, retain_graph=i < len(heads) - 1, allow_unused=True
            )
            flat = [
                (g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                for g, p in zip(grads, params, strict=True)
            ]
            rows.append(torch.cat(flat[: len(shared)]))
            head_grads.append(torch.cat(flat[len(shared) :]))
        return torch.stack(rows), head_grads

    def _manual_step(
        self, losses: torch.Tensor, mean_losses: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        """Per-task gradients -> combined shared update + weighted head updates -> one step."""
        opt, strategy = self.optimizers(), self.trainer.strategy
        if self._non_finite(losses):  # skipped: no gradient, no weighting update, no step
            opt.step()
            self.lr_schedulers().step()
            return losses.detach().sum()
        shared = self.model.shared_parameters()
        heads = [
            [p for p in self.model.heads[t.name].parameters() if p.requires_grad]
            for t in self.tasks
        ]
        rows, head_grads = self._task_gradients(losses, shared, heads)
        rows = strategy.reduce(rows, reduce_op="mean")
        head_grads = strategy.reduce(torch.cat(head_grads), reduce_op="mean").split(
            [sum(p.numel() for p in head) for head in heads]
        )
        update = self.weighting.combine(rows, mean_losses, history, self.global_step)
        weights = self.weighting.weights(history).detach()
        assign = [(shared, update)] + [
            (head, weight * grad)
            for head, weight, grad in zip(heads, weights, head_grads, strict=True)
        ]
        for params, flat in assign:
            for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
                p.grad = g.view_as(p).to(p.dtype)
        self.clip_gradients(
            opt, self.clip.get("gradient_clip_val"), self.clip.get("gradient_clip_algorithm")
        )
        opt.step()
        opt.zero_grad(set_to_none=True)
        self.lr_schedulers().step()
        return (weights * losses.detach()).sum()

    def _non_finite(self, losses: torch.Tensor) -> bool:
        """Asks the run's non-finite guards about ``losses``, as Lightning does before a
        backward pass (``manual_backward``, which this path never calls): ``stop`` raises
        here, before any gradient; ``skip`` answers True and drops the step's gradients."""
        guards = [c for c in self.trainer.callbacks if isinstance(c, NonFiniteGuard)]
        for guard in guards:
            guard.on_before_backward(self.trainer, self, losses)
        return any(guard.bad_step for guard in guards)

    def _eval_step(self, batch: tuple[torch.Tensor, ...], split: str) -> None:
        losses, outputs = self._losses(batch)
        for task, target, loss in zip(self.tasks, batch[1:], losses, strict=True):
            task.update(self.metrics[split][task.name], outputs[task.name], target)
            self.log(f"{split}/{task.name}/loss", loss, sync_dist=True, batch_size=len(batch[0]))
        self.log(f"{split}/loss", losses.sum(), sync_dist=True, batch_size=len(batch[0]))

    def _eval_epoch_end(self, split: str) -> None:
        values, primary = {}, []
        for task in self.tasks:
            collection = self.metrics[split][task.name]
            computed = {k: v.float() for k, v in collection.compute().items()}
            collection.reset()
            values |= computed
            sign = 1.0 if task.direction == "max" else -1.0
            primary.append(sign * computed[f"{split}/{task.name}/{task.metrics[0]}"])
        values[f"{split}/score"] = torch.stack(primary).mean()
        self.log_dict(values, prog_bar=False)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self) -> dict[str, Any]:
        # The whole module, so learnable task weights (uncertainty) train too, without decay.
        opt = build_optimizer(nn.ModuleList([self.model, self.weighting]), self.optimizer_cfg)
        schedule = build_schedule(opt, self.scheduler_cfg, self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
