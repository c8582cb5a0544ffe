"""Knowledge distillation: a smaller student learns from a frozen teacher's soft targets
(Hinton et al. 2015; see paradigm.py)."""
