"""Model building blocks every paradigm may use: timm backbones and weight sources, heads,
freezing, block groups, optimizers and schedules, the shared classification module, the
supervised recipe (scratch, baselines) and the cached source stage; ``schema.py`` holds the
settings they share (backbone, optimizer, scheduler, head, recipe).

Imports runner/ only; never a paradigm.
"""
