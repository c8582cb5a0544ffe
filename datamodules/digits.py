"""scikit-learn's handwritten digits as a LightningDataModule: the embedded, offline default.

1,797 8x8 images ship inside scikit-learn, so every paradigm can run with no network. The
datamodule stages the scenarios of DESIGN.md: a subset of classes (relabelled 0..n-1), a
few labelled examples per class, and a fixed domain shift (rotation, inversion, noise).
The split depends only on ``split_seed``, so the test set is the same for every run seed
and for a source task and its target task.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from datamodules.in_memory import InMemoryDataModule
from datamodules.labels import per_class
from datamodules.loading import TensorBatches


class DigitsDataModule(InMemoryDataModule):
    """Digits resized to ``image_size`` with ``in_chans`` channels, held in memory.

    Config keys: classes, train_per_class, val_per_class (labelled validation images per
    class, taken from the validation split; null keeps it whole), val_fraction,
    test_fraction, split_seed, shift
    (rotate degrees, invert, noise std), batch_size, eval_batch_size, image_size, in_chans,
    mean, std, translate (per-batch random translation on the device, training only).
    """

    in_memory = True  # every split is held as tensors (paradigms.contract.Needs)

    def __init__(
        self,
        image_size: int = 32,
        in_chans: int = 3,
        classes: list[int] | None = None,
        train_per_class: int | None = None,
        val_per_class: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        shift: dict | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        mean: float = 0.5,
        std: float = 0.5,
        seed: int = 0,
        translate: float = 0.0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.translate = translate
        # Without random augmentation a frozen backbone's features can be cached.
        self.random_augmentation = translate > 0
        self.image_size = image_size
        self.in_chans = in_chans
        self.classes = list(classes) if classes else list(range(10))
        self.train_per_class = train_per_class
        self.val_per_class = val_per_class
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.shift = dict(shift or {})
        self.mean = mean
        self.std = std

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        """The kept digits, as recorded beside an exported model."""
        return [str(c) for c in self.classes]

    def _split_positions(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The images of ``classes`` (indices into scikit-learn's 1,797 digits) and each
        split's sorted positions among them."""
        target = load_digits().target
        kept = np.flatnonzero(np.isin(target, self.classes))
        labels = np.searchsorted(self.classes, target[kept])
        indices = np.arange(len(labels))
        rest, test = train_test_split(
            indices, test_size=self.test_fraction, stratify=labels, random_state=self.split_seed
        )
        val_share = self.val_fraction / (1.0 - self.test_fraction)
        train, val = train_test_split(
            rest, test_size=val_share, stratify=labels[rest], random_state=self.split_seed
        )
        train = train[per_class(labels[train], self.train_per_class, self.split_seed)]
        val = val[per_class(labels[val], self.val_per_class, self.split_seed)]
        return kept, {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    def sample_ids(self) -> dict[str, list[str]]:
        """Which original images each split holds (``digits/<index>``), whatever the shift:
        what the leakage check compares across a source task and its target."""
        kept, positions = self._split_positions()
        return {name: [f"digits/{i}" for i in kept[idx]] for name, idx in positions.items()}

    def build(self) -> dict[str, TensorBatches]:
        digits = load_digits()
        kept, positions = self._split_positions()
        images = digits.images[kept].astype(np.float32) / 16.0
        labels = np.searchsorted(self.classes, digits.target[kept])
        tensors = self._sample_tensors(self._to_tensor(images), labels)
        return {
            name: TensorBatches(*(t[torch.as_tensor(idx)] for t in tensors))
            for name, idx in positions.items()
        }

    def _sample_tensors(self, pixels: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, ...]:
        """What a batch holds, per sample: the images and their class (multitask adds labels)."""
        return pixels, torch.as_tensor(labels, dtype=torch.long)

    def _to_tensor(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).unsqueeze(1)
        x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        x = apply_shift(x, self.shift, seed=self.split_seed)
        x = (x - self.mean) / self.std
        return x.expand(-1, self.in_chans, -1, -1).contiguous()

    def augment_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Random translation of a whole training batch at once, on its device."""
        if not self.translate:
            return x
        theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, :, 2] = (torch.rand(len(x), 2, device=x.device) * 2 - 1) * 2 * self.translate
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def apply_shift(x: torch.Tensor, shift: dict, seed: int) -> torch.Tensor:
    """A fixed domain shift of images in [0, 1]: rotation by ``rotate`` degrees, inversion and
    Gaussian noise (``noise`` std). The noise is seeded, so the shifted domain is one dataset."""
    angle = math.radians(float(shift.get("rotate", 0.0)))
    if angle:
        grid = rotation_grid(angle, len(x), *x.shape[-2:])
        x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    if shift.get("invert", False):
        x = 1.0 - x
    noise = float(shift.get("noise", 0.0))
    if noise:
        generator = torch.Generator().manual_seed(seed + 1)
        x = x + noise * torch.randn(x.shape, generator=generator)
    return x


def rotation_grid(angle: float, count: int, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid`` of a rotation by ``angle`` radians (``align_corners=False``), built
    with elementwise products and sums. affine_grid multiplies through MKL, whose kernel (and
    so the last bit of the grid) depends on the CPU: the shifted domain was another dataset on
    an AVX-512 Xeon. Elementwise, it gives the bits MKL's AVX2 kernel gives (the digests in
    tests/datamodules/test_digits.py), whichever kernel MKL would pick."""
    cos, sin = torch.tensor(math.cos(angle)), torch.tensor(math.sin(angle))
    xs = (torch.linspace(-1, 1, width) * ((width - 1) / width)).view(1, width)
    ys = (torch.linspace(-1, 1, height) * ((height - 1) / height)).view(height, 1)
    grid = torch.stack([xs * cos + ys * -sin, xs * sin + ys * cos], dim=-1)
    return grid.expand(count, height, width, 2)
