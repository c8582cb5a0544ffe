"""Digits with several labels per image, for multi-task learning, offline.

Each image is turned by a seeded multiple of 90 degrees, so one image answers several
questions: its digit, the rotation applied to it, whether the digit is odd, and how much ink
it has. Some tasks help each other (digit and parity share features), some compete (rotation
wants features that the digit task must ignore). A fraction of each task's training labels
can be hidden (NaN), as in real multi-task data where not every sample is labelled for every task.
"""

from __future__ import annotations

import numpy as np
import torch

from datamodules.digits import DigitsDataModule
from datamodules.loading import TensorBatches
from paradigms.runner.errors import ConfigError

TASKS = ("digit", "rotation", "parity", "ink")


class MultiTaskDigitsDataModule(DigitsDataModule):
    """Batches ``(images, label_1, ..., label_T)`` in the order of ``tasks``, labels as float
    (NaN = missing, as ``datamodules.labels`` says). Tasks: digit (multiclass, one class per kept digit), rotation
    (multiclass over ``rotations``), parity (binary: odd digit), ink (regression: mean
    brightness in [0, 1]).

    Config keys: those of DigitsDataModule, plus tasks (set by the multitask paradigm to the
    tasks it trains), rotations (multiples of 90 degrees), missing ({task: fraction of
    training labels hidden}).
    """

    def __init__(
        self,
        tasks: list[str] | None = None,
        rotations: list[int] | None = None,
        missing: dict[str, float] | None = None,
        **digits: object,
    ) -> None:
        super().__init__(**digits)
        self.tasks = list(tasks or TASKS[:3])
        self.rotations = list(rotations if rotations is not None else (0, 90, 180, 270))
        self.missing = dict(missing or {})

    @property
    def task_outputs(self) -> dict[str, int]:
        """The outputs each task's head needs."""
        counts = {"digit": self.num_classes, "rotation": len(self.rotations), "parity": 1, "ink": 1}
        return {name: counts[name] for name in TASKS}

    def _check(self) -> None:
        for name in [*self.tasks, *self.missing]:
            if name not in TASKS:
                raise ConfigError("data.tasks", name, "no such digits label", ", ".join(TASKS))
        if not self.rotations or any(a % 90 for a in self.rotations):
            raise ConfigError(
                "data.rotations",
                self.rotations,
                "must be multiples of 90 degrees",
                "[0,90,180,270]",
            )
        for name, share in self.missing.items():
            if not 0.0 <= share < 1.0:
                raise ConfigError(
                    f"data.missing.{name}",
                    share,
                    "a share of labels in [0, 1)",
                    f"data.missing.{name}=0.5",
                )

    def build(self) -> dict[str, TensorBatches]:
        self._check()
        splits = super().build()
        labels = splits["train"].tensors[1:]
        rng = np.random.default_rng(self.split_seed + 1)
        for name, share in self.missing.items():
            if name in self.tasks:
                column = labels[self.tasks.index(name)]
                hidden = rng.permutation(len(column))[: round(share * len(column))]
                column[torch.as_tensor(hidden)] = float("nan")
        return splits

    def _sample_tensors(self, pixels: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, ...]:
        turns = np.random.default_rng(self.split_seed).integers(
            len(self.rotations), size=len(labels)
        )
        rotated = pixels.clone()
        for index, angle in enumerate(self.rotations):
            chosen = torch.as_tensor(turns == index)
            rotated[chosen] = torch.rot90(pixels[chosen], k=angle // 90, dims=(2, 3))
        digits = np.asarray(self.classes)[labels]
        columns = {
            "digit": torch.as_tensor(labels),
            "rotation": torch.as_tensor(turns),
            "parity": torch.as_tensor(digits % 2),
            "ink": (pixels[:, 0] * self.std + self.mean).mean((1, 2)),
        }
        return rotated, *(columns[name].float() for name in self.tasks)
