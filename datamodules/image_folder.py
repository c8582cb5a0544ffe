"""A folder of class folders (torchvision ImageFolder layout), pre-split or split by the tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from datamodules.images import Files, ImageDataModule, Labelled
from paradigms.runner.errors import ConfigError

SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


class ImageFolderDataModule(ImageDataModule):
    """``root/<class>/<image>``, or ``root/train|val|test/<class>/<image>`` when ``root/train``
    exists (a missing val or test folder is carved out of train).

    Config keys: root, plus those of ``ImageDataModule``. Raises ConfigError for a missing
    root, a root without class folders, an empty class folder, or split folders whose
    classes differ from train's.
    """

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()

    def read(self) -> tuple[dict[str, Labelled], dict[str, list[str]]]:
        if not self.root.is_dir():
            raise ConfigError(
                "data.root",
                str(self.root),
                "no such folder",
                "give a folder with one sub-folder per class",
            )
        folders = {"all": self.root}
        if (self.root / "train").is_dir():
            folders = {
                split: self.root / name
                for split, names in SPLIT_FOLDERS.items()
                for name in names
                if (self.root / name).is_dir()
            }
        found, classes = {}, None
        for split, folder in folders.items():
            names, paths, labels = _class_folder(folder)
            if classes is not None and names != classes:
                raise ConfigError(
                    "data.root",
                    str(folder),
                    f"its classes {names[:10]} differ from train's {classes[:10]}",
                    "give every split folder the same class folders",
                )
            classes = names
            found[split] = Labelled(Files(paths), np.array(labels))
        return found, {"label": classes}


def _class_folder(folder: Path) -> tuple[list[str], list[str], list[int]]:
    """Class names, image paths and labels of one ImageFolder-style folder."""
    try:
        names, class_to_idx = find_classes(str(folder))
    except FileNotFoundError as error:
        raise ConfigError(
            "data.root",
            str(folder),
            "it holds no class folders",
            "put each class's images in root/<class>/",
        ) from error
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    counts = np.bincount([label for _, label in samples], minlength=len(names))
    if (counts == 0).any():
        empty = names[int(np.flatnonzero(counts == 0)[0])]
        raise ConfigError(
            "data.root",
            str(folder / empty),
            "the class folder holds no images",
            f"add images ({', '.join(IMG_EXTENSIONS[:4])}, ...) or remove the folder",
        )
    return names, [path for path, _ in samples], [label for _, label in samples]
