"""Local parallel jobs that import torch, Lightning and timm once (``hydra/launcher=parallel``)."""
