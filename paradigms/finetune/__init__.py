"""Fine-tuning: a pretrained model updated on new data by a method (full, partial, LP-FT,
gradual unfreezing, LoRA) with per-group learning rates (see paradigm.py)."""
