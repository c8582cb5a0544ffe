"""LightningDataModules the paradigms train on (``conf/data/``): in-memory ones (digits) and
ones that read files (image folders, CSV, torchvision, Hugging Face); ``schema.py`` holds their
settings, checked before torch loads."""
