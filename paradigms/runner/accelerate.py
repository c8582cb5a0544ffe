"""Speed knobs as one callback: TF32 matmuls, channels-last memory and torch.compile.

Each is a config value (``callbacks.accelerate.*``) whose default is right for the device:
TF32 applies on CUDA only; ``channels_last: auto`` applies on CUDA, and on a CPU to models
with grouped or depthwise convolutions, whose CPU kernels are several times faster
channels-last (``bench/bench_channels_last.py``: mobilenetv3_small_050 and lcnet_050 train
about 2x faster at 32 px; plain ResNets and ViTs gain nothing, so auto leaves them alone).
Compilation is opt-in because it costs start-up time. The model is compiled in place
(``Module.compile``), so its state-dict keys, checkpoints and exported weights stay those of
the plain model. The federated paradigm applies the same knobs to its Fabric loop
(``accelerate``).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


def _channels_last_input(module: torch.nn.Module, args: tuple) -> tuple:
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        try:
            return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
        except RuntimeError:  # under torch.func.vmap (federated's vmap engine), which cannot
            return args  # re-lay a batched input out; the channels-last weights still apply
    return args


def wants_channels_last(model: torch.nn.Module, device: torch.device, setting: bool | str) -> bool:
    """Whether ``channels_last`` (``auto``, true or false) lays ``model`` out channels-last
    on ``device``."""
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return True
    grouped = any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules())
    return device.type == "cpu" and grouped


def accelerate(
    model: torch.nn.Module,
    device: torch.device,
    compile: bool = False,
    compile_mode: str = "default",
    channels_last: bool | str = "auto",
    tf32: bool = True,
) -> None:
    """Applies the knobs to ``model`` (in place, once) for a run on ``device``."""
    if getattr(model, "_accelerated", False):
        return
    if tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if wants_channels_last(model, device, channels_last):
        model.to(memory_format=torch.channels_last)
        model.register_forward_pre_hook(_channels_last_input)
    if compile:
        model.compile(mode=compile_mode)
    model._accelerated = True


class Accelerate(Callback):
    """Applies the knobs once, when a stage is set up, to the LightningModule's ``model``."""

    def __init__(
        self,
        compile: bool = False,
        compile_mode: str = "default",
        channels_last: bool | str = "auto",
        tf32: bool = True,
    ) -> None:
        self.knobs = {
            "compile": compile,
            "compile_mode": compile_mode,
            "channels_last": channels_last,
            "tf32": tf32,
        }

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model = getattr(pl_module, "model", None)
        if model is not None:
            accelerate(model, trainer.strategy.root_device, **self.knobs)
