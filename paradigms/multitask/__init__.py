"""Multi-task learning: a shared timm backbone, one head per task, loss weighting strategies."""

from paradigms.multitask.paradigm import MultiTask

__all__ = ["MultiTask"]
