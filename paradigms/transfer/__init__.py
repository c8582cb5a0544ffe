"""Transfer learning: a base model's layers frozen, its last layers replaced by a new head
for the new label space (see paradigm.py); the frozen backbone's features are cached."""
