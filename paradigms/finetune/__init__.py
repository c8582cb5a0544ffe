"""Fine-tuning: a pretrained model updated on new data by a method (``methods.py``: full,
partial, LP-FT, gradual unfreezing, LoRA; one class each, chosen by ``paradigm/method``), with
per-group learning rates (``lr_groups.py``) in its LightningModule (``module.py``). The
paradigm is in ``paradigm.py``, its settings and each method's in ``schema.py``."""
