"""LightningDataModules, on two bases.

- ``in_memory.InMemoryDataModule``: data held as tensors (``digits``, ``multitask_digits``, and
  the transfer paradigm's cached features); a subclass only builds its tensors.
- ``images.ImageDataModule``: images read from files (``image_folder``, ``csv_images``,
  ``torchvision_sets``, ``hf``); a subclass only lists its images and labels
  (``data.in_memory=true`` decodes them once into tensors).

Both batch with ``loading`` (order keyed by seed and epoch, sharded by rank) and mark missing
labels as ``labels`` says.
"""
