"""The pieces of knowledge distillation: the loss, the frozen teacher and the student's module.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015): the student
matches the teacher's temperature-softened class probabilities; the KL term is scaled by T^2
so its gradients keep their size as T changes. FitNets (Romero et al., 2015) add a feature
term: the student's pooled features, through a learned projection, regress the teacher's.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from datamodules.labels import IGNORE, is_missing
from datamodules.loading import TensorBatches
from paradigms.models.classifier import ClassificationModule

# The frozen teacher is in eval mode on purpose; Lightning warns about every such module.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    criterion: nn.Module,
) -> torch.Tensor:
    """alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)).

    The CE averages over the labelled examples only (missing ones, ``IGNORE``, have none); the KL
    term over every example, so unlabelled images of a transfer set still teach."""
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    labelled = ~is_missing(labels)
    hard = criterion(student, labels) if labelled.any() else student.new_zeros(())
    return alpha * hard + (1.0 - alpha) * temperature**2 * soft


class TeacherInput(nn.Module):
    """Turns a batch normalised and sized for the student into what the teacher expects:
    (x * std + mean - teacher_mean) / teacher_std, resized to the teacher's image size."""

    def __init__(
        self,
        mean: Any,
        std: Any,
        teacher_mean: Any,
        teacher_std: Any,
        image_size: int,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.renormalise = (mean, std) != (teacher_mean, teacher_std)
        channel = lambda v: torch.tensor(v, dtype=torch.float32).reshape(1, -1, 1, 1)  # noqa: E731
        # x * scale + shift, folded from both normalisations
        self.register_buffer("scale", channel(std) / channel(teacher_std), persistent=False)
        self.register_buffer(
            "shift",
            (channel(mean) - channel(teacher_mean)) / channel(teacher_std),
            persistent=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.renormalise:
            x = x * self.scale + self.shift
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x


class PooledFeatures:
    """Keeps what a timm model's classifier last received: its pooled (pre-logits) features."""

    def __init__(self, model: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.handle = model.get_classifier().register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.value = inputs[0].flatten(1)


def freeze(teacher: nn.Module) -> nn.Module:
    """No gradients and eval mode (BatchNorm statistics and dropout stay as trained)."""
    return teacher.requires_grad_(False).eval()


@torch.no_grad()
def feature_size(model: nn.Module, classifier_of: nn.Module, image_size: int, in_chans: int) -> int:
    """The size of the pooled features ``classifier_of`` hands its classifier when ``model``
    runs, from one forward pass on a blank image."""
    was_training = model.training
    tap = PooledFeatures(classifier_of)
    model.eval()(torch.zeros(1, in_chans, image_size, image_size))
    model.train(was_training)
    tap.handle.remove()
    return tap.value.shape[1]


class Teacher(nn.Sequential):
    """The frozen teacher behind its input bridge; ``train()`` cannot switch it out of eval."""

    def __init__(self, bridge: TeacherInput, model: nn.Module) -> None:
        super().__init__(bridge, model)
        freeze(self)

    @property
    def model(self) -> nn.Module:
        return self[1]

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)


class DistillationModule(ClassificationModule):
    """A student trained on labels and a frozen teacher's soft targets (and, optionally, its
    pooled features). Teacher outputs come from the batch when cached (``batch[2]`` logits,
    ``batch[3]`` features), else from running the teacher on the batch."""

    def __init__(
        self,
        model: nn.Module,
        teacher: Teacher,
        num_classes: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        temperature: float,
        alpha: float,
        feature_weight: float = 0.0,
        image_size: int = 32,
        in_chans: int = 3,
        label_smoothing: float = 0.0,
        top_k: int = 3,
    ) -> None:
        projection, groups = None, None
        if feature_weight > 0:
            sizes = (
                feature_size(model, model, image_size, in_chans),
                feature_size(teacher, teacher.model, image_size, in_chans),
            )
            projection = nn.Identity() if sizes[0] == sizes[1] else nn.Linear(*sizes)
            groups = param_groups_weight_decay(
                nn.ModuleList([model, projection]), optimizer.get("weight_decay", 0.0)
            )
        super().__init__(
            model, num_classes, optimizer, scheduler, label_smoothing, top_k, param_groups=groups
        )
        self.teacher = teacher
        self.projection = projection
        self.temperature = temperature
        self.alpha = alpha
        self.feature_weight = feature_weight
        self.student_features = PooledFeatures(model) if projection is not None else None
        self.teacher_features = PooledFeatures(teacher.model) if projection is not None else None

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The teacher's logits and (when the feature term is on) pooled features for ``x``."""
        logits = self.teacher(x)
        return logits, self.teacher_features.value if self.teacher_features else None

    def loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if len(batch) > 2:
            teacher_logits, teacher_features = batch[2], batch[3] if len(batch) > 3 else None
        else:
            teacher_logits, teacher_features = self.teacher_outputs(batch[0])
        loss = kd_loss(
            logits, teacher_logits, batch[1], self.temperature, self.alpha, self.criterion
        )
        if self.projection is not None:
            student = self.projection(self.student_features.value)
            loss = loss + self.feature_weight * F.mse_loss(student, teacher_features)
        return loss


@torch.no_grad()
def cache_teacher_outputs(
    module: DistillationModule, data: TensorBatches, batch_size: int
) -> TensorBatches:
    """``data`` with the teacher's logits (and features) on it appended, computed once."""
    outputs = [module.teacher_outputs(x) for (x, *_) in _chunks(data, batch_size)]
    extra = [torch.cat([o[0] for o in outputs])]
    if module.teacher_features is not None:
        extra.append(torch.cat([o[1] for o in outputs]))
    return TensorBatches(*data.tensors[:2], *extra)


def _chunks(data: TensorBatches, batch_size: int) -> Iterable[tuple[torch.Tensor, ...]]:
    for start in range(0, len(data), batch_size):
        yield data[torch.arange(start, min(start + batch_size, len(data)))]


def with_transfer_set(labelled: TensorBatches, transfer: TensorBatches) -> TensorBatches:
    """The labelled training data followed by the transfer set's images, unlabelled."""
    unlabelled = torch.full_like(transfer.tensors[1], IGNORE)
    return TensorBatches(
        torch.cat([labelled.tensors[0], transfer.tensors[0]]),
        torch.cat([labelled.tensors[1], unlabelled]),
    )


@torch.no_grad()
def agreement(student: nn.Module, teacher: nn.Module, batches: Iterable, num_classes: int) -> float:
    """How often the student's top-1 class equals the teacher's, on ``batches``."""
    metric = MulticlassAccuracy(num_classes, average="micro")
    student.eval()
    teacher.eval()
    for x, *_ in batches:
        metric.update(student(x), teacher(x).argmax(dim=1))
    return float(metric.compute())


@torch.no_grad()
def ms_per_image(model: nn.Module, batches: Iterable) -> float:
    """Inference time in milliseconds per image (eval mode, after one warm-up batch)."""
    model.eval()
    batches = [x for x, *_ in batches]
    model(batches[0])
    started = time.perf_counter()
    for x in batches:
        model(x)
    return 1000.0 * (time.perf_counter() - started) / sum(len(x) for x in batches)
