"""Supervised training from random weights: the baseline every other paradigm is compared to
(``paradigm.py``; its settings in ``schema.py``)."""
