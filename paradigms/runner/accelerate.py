"""GPU speed knobs as one callback: TF32 matmuls, channels-last memory and torch.compile.

Each is a config value (``callbacks.accelerate.*``) whose default is right for a GPU and
harmless on a CPU: ``channels_last: auto`` and TF32 apply on CUDA only, and compilation is
opt-in because it costs start-up time. The model is compiled in place (``Module.compile``),
so its state-dict keys, checkpoints and exported weights stay those of the plain model.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


def _channels_last_input(module: torch.nn.Module, args: tuple) -> tuple:
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return args


class Accelerate(Callback):
    """Applies the knobs once, when a stage is set up, to the LightningModule's ``model``."""

    def __init__(
        self,
        compile: bool = False,
        compile_mode: str = "default",
        channels_last: bool | str = "auto",
        tf32: bool = True,
    ) -> None:
        self.compile = compile
        self.compile_mode = compile_mode
        self.channels_last = channels_last
        self.tf32 = tf32

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model = getattr(pl_module, "model", None)
        if model is None or getattr(model, "_accelerated", False):
            return
        cuda = trainer.strategy.root_device.type == "cuda"
        if self.tf32 and cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if self.channels_last is True or (self.channels_last == "auto" and cuda):
            model.to(memory_format=torch.channels_last)
            model.register_forward_pre_hook(_channels_last_input)
        if self.compile:
            model.compile(mode=self.compile_mode)
        model._accelerated = True
