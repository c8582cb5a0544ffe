"""The datamodule behind every image dataset read from files: folders, CSV, torchvision, HF.

A subclass overrides one hook, ``read()``, which returns the labelled images it found, as a
pool to split or as ready-made ``train`` / ``val`` / ``test`` splits. This class owns the rest,
so every source behaves alike: a subset of classes (relabelled 0..n-1), few labels per class,
a seeded stratified split of whatever split the source lacks, transforms resolved from the
backbone (``datamodules.transforms``), unreadable files named or skipped, and loaders whose
order is keyed by (seed, epoch) and sharded by rank (``datamodules.loading``).

Labels are a vector (one task) or a matrix (one column per task, ``IGNORE`` where a label is
missing), so a multi-task paradigm reads ``tasks`` and a single-task one ``num_classes``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from datamodules.loading import sample_loader
from datamodules.transforms import Transform, build_transforms
from paradigms.runner.errors import ConfigError

IGNORE = -100  # a missing label; nn.CrossEntropyLoss's default ignore_index
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
    their labels: [N] or [N, tasks] class indices."""

    source: Any
    labels: np.ndarray
    index: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = np.arange(len(self.labels))

    def load(self, i: int) -> Image.Image:
        return self.source.load(int(self.index[i]))

    def name(self, i: int) -> str:
        return self.source.name(int(self.index[i]))

    def subset(self, keep: np.ndarray) -> Labelled:
        return Labelled(self.source, self.labels[keep], self.index[keep])


class ImageSamples(Dataset):
    """One transformed image and its label per item; ``None`` for a skipped unreadable file."""

    def __init__(
        self, images: Labelled, transform: Transform, mode: str, skip_bad_files: bool
    ) -> None:
        self.images = images
        self.labels = torch.as_tensor(images.labels, dtype=torch.long)
        self.transform = transform
        self.mode = mode
        self.skip_bad_files = skip_bad_files

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
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
        return self.transform(image), self.labels[index]


class ImageDataModule(pl.LightningDataModule):
    """Splits, subsets, transforms and loads the images ``read()`` returns.

    Config keys: backbone (timm name: mean/std/size are resolved from it), image_size,
    in_chans, classes, train_per_class, val_fraction, test_fraction, split_seed, batch_size,
    eval_batch_size, mean, std, interpolation, crop_pct (null: the backbone's), augment
    (timm create_transform training options), loader (num_workers, pin_memory,
    persistent_workers), skip_bad_files. Raises ConfigError for unknown classes, a split
    too small to stratify, or a single-task read of data with several label columns.
    """

    def __init__(
        self,
        backbone: str,
        image_size: int | None = None,
        in_chans: int = 3,
        classes: list[Any] | None = None,
        train_per_class: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        transform: dict[str, Any] | None = None,
        augment: dict[str, Any] | None = None,
        loader: dict[str, Any] | None = None,
        skip_bad_files: bool = False,
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
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.transform = dict(transform or {})
        self.augment = dict(augment or {})
        self.loader = dict(loader or {})
        self.skip_bad_files = skip_bad_files
        self.seed = seed
        self.tasks: dict[str, list[str]] = {}
        self.splits: dict[str, ImageSamples] = {}

    def read(self) -> tuple[dict[str, Labelled], dict[str, list[str]]]:
        """The source's images, as ``{"all": ...}`` or some of train/val/test, and its tasks:
        {task name: class names}, one task per label column, in column order."""
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

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        found, self.tasks = self.read()
        if len(self.tasks) == 1:  # an image without its one label teaches nothing
            found = {k: v.subset(np.flatnonzero(v.labels >= 0)) for k, v in found.items()}
        found = self._split(self._keep_classes(found))
        found["train"] = self._few_labels(found["train"])
        training, evaluation = build_transforms(
            self.backbone, self.image_size, self.in_chans, self.transform, self.augment
        )
        mode = MODES[self.in_chans]
        for name in SPLITS:
            transform = training if name == "train" else evaluation
            self.splits[name] = ImageSamples(found[name], transform, mode, self.skip_bad_files)

    def _primary(self, labels: np.ndarray) -> np.ndarray:
        return labels if labels.ndim == 1 else labels[:, 0]

    def _keep_classes(self, found: dict[str, Labelled]) -> dict[str, Labelled]:
        """Only the configured classes, relabelled 0..n-1 in the source's order."""
        if self.classes is None:
            return found
        if len(self.tasks) != 1:
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
            out[split] = Labelled(subset.source, mapping[subset.labels], subset.index)
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
        labels = self._primary(pool.labels)
        counts = np.bincount(labels[labels >= 0])
        # each class needs two members to be stratified; several tasks are split at random
        stratify = labels if len(self.tasks) == 1 and (counts != 1).all() else None
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

    def _few_labels(self, train: Labelled) -> Labelled:
        """The first ``train_per_class`` training images of each class, in a seeded order."""
        if self.train_per_class is None:
            return train
        labels = self._primary(train.labels)
        order = np.random.default_rng(self.split_seed).permutation(len(labels))
        picked = [
            order[labels[order] == c][: self.train_per_class]
            for c in np.unique(labels[labels >= 0])
        ]
        return train.subset(np.sort(np.concatenate(picked)))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
        batch = self.batch_size if shuffle else self.eval_batch_size
        return sample_loader(
            self.splits[split], batch, shuffle, self.seed, rank, world, self.loader
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _class_index(wanted: Any, names: list[str]) -> int:
    """A class given by name, or else by index."""
    if str(wanted) in names:
        return names.index(str(wanted))
    if isinstance(wanted, int) and 0 <= wanted < len(names):
        return wanted
    raise ConfigError(
        "data.classes", wanted, "no such class in the data", f"pick from {names[:20]}"
    )


def label_index(values: list[Any], names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Class indices of raw label values, and the class names (sorted, numbers numerically);
    an empty value is ``IGNORE``."""
    present = {str(v) for v in values if v is not None and str(v) != ""}
    if names is None:
        numeric = all(v.lstrip("-").isdigit() for v in present)
        names = sorted(present, key=int if numeric else str)
    lookup = {name: i for i, name in enumerate(names)}
    return np.array(
        [lookup.get(str(v), IGNORE) if v not in (None, "") else IGNORE for v in values]
    ), names
