"""The datamodule behind every image dataset read from files: folders, CSV, torchvision, HF.

A subclass overrides one hook, ``read()``, which returns the labelled images it found, as a
pool to split or as ready-made ``train`` / ``val`` / ``test`` splits. This class owns the rest,
so every source behaves alike: a subset of classes (relabelled 0..n-1), few labels per class,
a seeded stratified split of whatever split the source lacks, transforms resolved from the
backbone (``datamodules.transforms``), unreadable files named or skipped, and loaders whose
order is keyed by (seed, epoch) and sharded by rank (``datamodules.loading``).

Images are read from their files every epoch, so a dataset of any size trains with random
augmentation; ``in_memory=true`` instead decodes every split once, with the deterministic
evaluation transform, into tensors held in memory (``datamodules.in_memory``'s splits), for
data that fits in RAM and for the paradigms that need tensors (distillation's caches,
federated clients).

Labels are a vector (one task) or a matrix (one column per task) of class indices, or of
floats for a multi-task table, missing as ``datamodules.labels`` says; a batch is
``(images, label_1, ..., label_T)``. A multi-task paradigm reads ``tasks``, a single-task one
``num_classes``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from datamodules.labels import is_missing, per_class
from datamodules.loading import TensorBatches, sample_loader, split_loader
from datamodules.transforms import Transform, build_transforms
from paradigms.runner.errors import ConfigError

MODES = {1: "L", 3: "RGB"}
SPLITS = ("train", "val", "test")


class BadImageError(OSError):
    """An image file that cannot be decoded; the message names the file and the fix."""


class Files:
    """Images stored as files at ``paths``."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def load(self, i: int) -> Image.Image:
        with Image.open(self.paths[i]) as image:
            image.load()
            return image

    def name(self, i: int) -> str:
        return str(self.paths[i])


@dataclass
class Labelled:
    """Some images of a source (``load(i)``/``name(i)``, picklable for loader workers) and
    their labels: [N] or [N, tasks], class indices (int) or multi-task labels (float), and
    the source's other columns by name (a CSV's or a dataset's: what a natural federated
    partition groups by)."""

    source: Any
    labels: np.ndarray
    index: np.ndarray | None = None
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = np.arange(len(self.labels))

    def load(self, i: int) -> Image.Image:
        return self.source.load(int(self.index[i]))

    def name(self, i: int) -> str:
        return self.source.name(int(self.index[i]))

    def subset(self, keep: np.ndarray) -> Labelled:
        columns = {name: values[keep] for name, values in self.columns.items()}
        return Labelled(self.source, self.labels[keep], self.index[keep], columns)


class ImageSamples(Dataset):
    """One transformed image and its labels per item, ``(image, label_1, ..., label_T)``;
    ``None`` for a skipped unreadable file."""

    def __init__(
        self, images: Labelled, transform: Transform, mode: str, skip_bad_files: bool
    ) -> None:
        self.images = images
        floating = images.labels.dtype.kind == "f"
        self.labels = torch.as_tensor(images.labels, dtype=torch.float if floating else torch.long)
        self.transform = transform
        self.mode = mode
        self.skip_bad_files = skip_bad_files

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...] | None:
        try:
            image = self.images.load(index).convert(self.mode)
        except (OSError, ValueError, SyntaxError) as error:  # what PIL raises for bad files
            name = self.images.name(index)
            if not self.skip_bad_files:
                raise BadImageError(
                    f"cannot read image {name} ({error}). Fix: replace or delete the file, "
                    "or set data.skip_bad_files=true"
                ) from error
            warnings.warn(f"skipping unreadable image {name} ({error})", stacklevel=1)
            return None
        labels = self.labels[index]
        return self.transform(image), *(labels.unbind() if labels.dim() else (labels,))


class ImageDataModule(pl.LightningDataModule):
    """Splits, subsets, transforms and loads the images ``read()`` returns.

    Config keys: backbone (timm name: mean/std/size are resolved from it), image_size,
    in_chans, classes, train_per_class, val_per_class (labelled validation images per class,
    taken from the validation split; null keeps it whole), val_fraction, test_fraction,
    split_seed, batch_size,
    eval_batch_size, mean, std, interpolation, crop_pct (null: the backbone's), augment
    (timm create_transform training options), loader (num_workers, pin_memory,
    persistent_workers), skip_bad_files, in_memory (decode every split once into tensors,
    with the evaluation transform). Raises ConfigError for unknown classes, a split too small
    to stratify, or a single-task read of data with several label columns.
    """

    def __init__(
        self,
        backbone: str,
        image_size: int | None = None,
        in_chans: int = 3,
        classes: list[Any] | None = None,
        train_per_class: int | None = None,
        val_per_class: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        transform: dict[str, Any] | None = None,
        augment: dict[str, Any] | None = None,
        loader: dict[str, Any] | None = None,
        skip_bad_files: bool = False,
        in_memory: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if in_chans not in MODES:
            raise ConfigError(
                "backbone.in_chans",
                in_chans,
                "images load as 1 or 3 channels",
                "backbone.in_chans=3",
            )
        self.backbone = backbone
        self.image_size = image_size
        self.in_chans = in_chans
        self.classes = list(classes) if classes else None
        self.train_per_class = train_per_class
        self.val_per_class = val_per_class
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.transform = dict(transform or {})
        self.augment = dict(augment or {})
        self.loader = dict(loader or {})
        self.skip_bad_files = skip_bad_files
        self.in_memory = in_memory
        # Without random augmentation a frozen backbone's features can be cached.
        self.random_augmentation = self.augment.get("enabled", True) and not in_memory
        self.seed = seed
        self.tasks: dict[str, list[str] | None] = {}
        self.splits: dict[str, ImageSamples | TensorBatches] = {}
        self.train_columns: dict[str, np.ndarray] = {}  # the training split's other columns
        self.evaluation_transform: Transform | None = None

    def read(self) -> tuple[dict[str, Labelled], dict[str, list[str] | None]]:
        """The source's images, as ``{"all": ...}`` or some of train/val/test, and its tasks:
        {task name: class names, or None for labels that are numbers}, one task per label
        column, in column order."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        if len(self.tasks) != 1:
            raise ConfigError(
                "paradigm",
                f"{len(self.tasks)} label columns",
                f"this paradigm trains one label and the data has tasks {list(self.tasks)}",
                "keep one label column (e.g. data.label_columns=[...]) or use a multi-task paradigm",
            )
        return len(next(iter(self.tasks.values())))

    @property
    def class_names(self) -> list[str] | None:
        """The one label's class names once set up (None for several labels or numbers)."""
        names = list(self.tasks.values())
        return list(names[0]) if len(names) == 1 and names[0] is not None else None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        found = self._labelled()
        training, evaluation = build_transforms(
            self.backbone, self.image_size, self.in_chans, self.transform, self.augment
        )
        self.evaluation_transform, self.train_columns = evaluation, found["train"].columns
        for name in SPLITS:
            transform = training if name == "train" and not self.in_memory else evaluation
            self.splits[name] = self.samples(found[name], transform)
        if self.in_memory:
            self.splits = {name: self.decode(samples) for name, samples in self.splits.items()}

    def samples(self, images: Labelled, transform: Transform) -> ImageSamples:
        """``images`` read through ``transform``, as this datamodule reads any split."""
        return ImageSamples(images, transform, MODES[self.in_chans], self.skip_bad_files)

    def _labelled(self) -> dict[str, Labelled]:
        """The images of each split, before any decoding (sets ``tasks``)."""
        found, self.tasks = self.read()
        if one_class_label(next(iter(found.values())).labels):
            # an image without its one label teaches nothing
            found = {k: v.subset(np.flatnonzero(~is_missing(v.labels))) for k, v in found.items()}
        found = self._split(self._keep_classes(found))
        found["train"] = self._per_class(found["train"], self.train_per_class)
        found["val"] = self._per_class(found["val"], self.val_per_class)
        return found

    def sample_ids(self) -> dict[str, list[str]]:
        """Each split's images by name (a file's path, a dataset row), read without decoding:
        what the leakage check compares across a source task and its target."""
        found = self._labelled()
        return {
            name: [found[name].name(i) for i in range(len(found[name].labels))] for name in SPLITS
        }

    def decode(self, samples: ImageSamples) -> TensorBatches:
        """Every image of ``samples`` transformed once, with its labels, as tensors."""
        workers = {**self.loader, "persistent_workers": False}
        loader = sample_loader(samples, self.eval_batch_size, False, self.seed, workers=workers)
        batches = list(loader)
        return TensorBatches(*(torch.cat(column) for column in zip(*batches, strict=True)))

    def _primary(self, labels: np.ndarray) -> np.ndarray:
        return labels if labels.ndim == 1 else labels[:, 0]

    def _keep_classes(self, found: dict[str, Labelled]) -> dict[str, Labelled]:
        """Only the configured classes, relabelled 0..n-1 in the source's order."""
        if self.classes is None:
            return found
        if not one_class_label(next(iter(found.values())).labels):
            raise ConfigError(
                "data.classes",
                self.classes,
                "a class subset needs one label column",
                "data.classes=null",
            )
        task, names = next(iter(self.tasks.items()))
        kept = sorted({_class_index(c, names) for c in self.classes})
        mapping = np.full(len(names), -1)
        mapping[kept] = np.arange(len(kept))
        self.tasks = {task: [names[i] for i in kept]}
        out = {}
        for split, images in found.items():
            subset = images.subset(np.flatnonzero(mapping[images.labels] >= 0))
            out[split] = Labelled(
                subset.source, mapping[subset.labels], subset.index, subset.columns
            )
        return out

    def _split(self, found: dict[str, Labelled]) -> dict[str, Labelled]:
        """Carves the splits the source lacks out of its pool, stratified and seeded."""
        pool = found.pop("all", None) or found.pop("train")
        fractions = {"test": self.test_fraction, "val": self.val_fraction}
        missing = [s for s in ("test", "val") if s not in found]
        share = 1.0
        for split in missing:
            keep, held = self._stratified(pool, fractions[split] / share)
            found[split], pool = pool.subset(held), pool.subset(keep)
            share -= fractions[split]
        found["train"] = pool
        return found

    def _stratified(self, pool: Labelled, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        labels = pool.labels
        # each class needs two members to be stratified; several tasks are split at random
        one = one_class_label(labels) and (np.bincount(labels) != 1).all()
        stratify = labels if one else None
        try:
            return train_test_split(
                np.arange(len(labels)),
                test_size=fraction,
                stratify=stratify,
                random_state=self.split_seed,
            )
        except ValueError as error:
            raise ConfigError(
                "data.val_fraction",
                self.val_fraction,
                f"the data is too small to split ({error})",
                "add images, or give pre-split train/val/test data",
            ) from error

    def _per_class(self, images: Labelled, count: int | None) -> Labelled:
        """The first ``count`` images of each class, in a seeded order (all: ``None``)."""
        if count is None:
            return images
        return images.subset(per_class(self._primary(images.labels), count, self.split_seed))

    def train_dataloader(self) -> DataLoader:
        return split_loader(self, "train", shuffle=True, workers=self.loader)

    def val_dataloader(self) -> DataLoader:
        return split_loader(self, "val", shuffle=False, workers=self.loader)

    def test_dataloader(self) -> DataLoader:
        return split_loader(self, "test", shuffle=False, workers=self.loader)


def one_class_label(labels: np.ndarray) -> bool:
    """Whether ``labels`` are one class index per image (not several, not multi-task floats)."""
    return labels.ndim == 1 and labels.dtype.kind != "f"


def _class_index(wanted: Any, names: list[str]) -> int:
    """A class given by name, or else by index."""
    if str(wanted) in names:
        return names.index(str(wanted))
    if isinstance(wanted, int) and 0 <= wanted < len(names):
        return wanted
    raise ConfigError(
        "data.classes", wanted, "no such class in the data", f"pick from {names[:20]}"
    )
