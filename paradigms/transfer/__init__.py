"""Transfer learning: a base model's layers frozen, its last layers replaced by a new head for
the new label space (``paradigm.py``); the frozen backbone's features computed once
(``features.py``); its settings in ``schema.py``."""
