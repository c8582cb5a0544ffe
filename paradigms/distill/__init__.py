"""Knowledge distillation: a smaller student learns from a frozen teacher's soft targets
(Hinton et al. 2015): the paradigm in ``paradigm.py``, the loss and the frozen teacher in
``module.py``, its settings in ``schema.py``."""
