"""Model building blocks every paradigm may use: timm backbones and weight sources, heads,
freezing, block groups, optimizers and schedules, the shared classification module, the
supervised recipe and the cached source stage.

Imports runner/ only; never a paradigm.
"""
