"""Multi-task learning: a shared timm backbone, one head per task, loss weighting strategies."""
