"""timm models and where their weights come from.

A backbone spec names any timm model and a weight source: ``none`` (random init), ``timm``
(the hub; opt-in, needs a network), or a path: a ``.safetensors`` / ``.pth`` file, a
Lightning ``.ckpt`` of an earlier run of this tool, or that run's directory (its exported
``model.safetensors``). A file keeps its head when its classifier fits the label space and
its classes are the data's: an export records its class names (``model.json``), and the head
of classes 0-4 is not kept for classes 5-9. Where the names are unknown (a plain weights file,
timm's hub) a head that fits by shape is kept. Otherwise the head is re-initialised, which is
the only case where it is replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv, load_state_dict
from torch import nn

from paradigms.models.names import is_hub_name, unknown_model_hint
from paradigms.runner.errors import ConfigError

EXPORT_WEIGHTS = "model.safetensors"
EXPORT_META = "model.json"
LIGHTNING_PREFIX = "model."


def check_model_name(name: str) -> None:
    """Stops on a model name timm does not know, suggesting the closest ones."""
    hint = unknown_model_hint(name)
    if hint is not None:
        raise ConfigError("backbone.name", name, "timm has no such model", hint)


def architecture(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` after the name check; a Hub model
    (``hf-hub:...``) that cannot be fetched stops in one line."""
    check_model_name(name)
    try:
        return timm.create_model(name, **kwargs)
    except OSError as error:
        if not is_hub_name(name):
            raise
        raise ConfigError(
            "backbone.name",
            name,
            f"timm could not fetch this Hub model ({type(error).__name__})",
            "connect to the network, or use a timm name offline (backbone.name=resnet18)",
        ) from error


def resolve_weights_file(weights: str | None) -> Path | None:
    """The weights file a spec points to, or None for ``none`` / ``timm``."""
    if weights in (None, "none", "timm"):
        return None
    path = Path(weights).expanduser()
    if path.is_dir():
        path = path / EXPORT_WEIGHTS
    if not path.is_file():
        raise ConfigError(
            "backbone.weights",
            weights,
            "no such weights file or run directory",
            "give a .safetensors/.pth/.ckpt file, a run directory, 'none' or 'timm'",
        )
    return path


def create_model(spec: dict[str, Any], num_classes: int) -> nn.Module:
    """A timm classifier for ``num_classes`` with the spec's weights loaded."""
    return create_pretrained(spec, num_classes)[0]


def create_pretrained(
    spec: dict[str, Any], num_classes: int, class_names: list[str] | None = None
) -> tuple[nn.Module, bool]:
    """The model, and whether its head came from the weights (the label space matched: the
    shape, and ``class_names`` where both they and the weights' are known)."""
    weights = spec.get("weights") or "none"
    try:
        model = architecture(
            spec["name"],
            pretrained=weights == "timm",
            num_classes=num_classes,
            in_chans=spec.get("in_chans", 3),
            drop_rate=spec.get("drop_rate", 0.0),
            drop_path_rate=spec.get("drop_path_rate") or None,
            **spec.get("model_kwargs", {}),
        )
    except (OSError, RuntimeError) as error:
        if weights != "timm":
            raise
        raise ConfigError(
            "backbone.weights",
            weights,
            f"timm could not fetch hub weights ({type(error).__name__})",
            "give a local weights file, or weights=none when offline",
        ) from error
    if weights == "timm":
        return model, num_classes == model.pretrained_cfg.get("num_classes")
    path = resolve_weights_file(weights)
    if path is None:
        return model, False
    return model, load_weights(model, path, spec.get("trust_pickle", False), class_names)


def data_class_names(datamodule: Any) -> list[str] | None:
    """The class names of a single-label datamodule, or None where it does not say."""
    return getattr(datamodule, "class_names", None)


def recorded_class_names(weights: str | None) -> list[str] | None:
    """The class names an export of this tool recorded beside its weights (``model.json``);
    None for other files, ``timm`` or ``none``."""
    path = resolve_weights_file(weights)
    meta = path.with_name(EXPORT_META) if path and path.name == EXPORT_WEIGHTS else None
    if meta is None or not meta.is_file():
        return None
    return json.loads(meta.read_text()).get("class_names")


def read_state_dict(path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, without unpickling arbitrary objects unless trusted."""
    try:
        state = load_state_dict(str(path), weights_only=not trust_pickle)
    except RuntimeError as error:
        raise ConfigError(
            "backbone.weights",
            str(path),
            "the file needs arbitrary unpickling, which can run code",
            "convert it to .safetensors, or set backbone.trust_pickle=true for a file you trust",
        ) from error
    if any(k.startswith(LIGHTNING_PREFIX) for k in state):  # a checkpoint of this tool
        state = {
            k[len(LIGHTNING_PREFIX) :]: v
            for k, v in state.items()
            if k.startswith(LIGHTNING_PREFIX)
        }
    return state


def classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's classifier, as timm names it."""
    names = model.pretrained_cfg.get("classifier", "head")
    names = [names] if isinstance(names, str) else list(names)
    return {k for k in model.state_dict() if any(k.startswith(n + ".") for n in names)}


def load_weights(
    model: nn.Module,
    path: Path,
    trust_pickle: bool = False,
    class_names: list[str] | None = None,
) -> bool:
    """Loads ``path`` into ``model``; returns whether the file's head was kept: it fits by
    shape and, where the file's classes and ``class_names`` are both known, they are equal."""
    state = read_state_dict(path, trust_pickle)
    own = model.state_dict()
    first_conv = model.pretrained_cfg.get("first_conv")
    conv_key = f"{first_conv}.weight" if first_conv else None
    if conv_key in state and conv_key in own and state[conv_key].shape != own[conv_key].shape:
        state[conv_key] = adapt_input_conv(
            own[conv_key].shape[1], state[conv_key], state[conv_key].shape[1]
        )
    head = classifier_keys(model)
    recorded = recorded_class_names(str(path))
    same_classes = recorded is None or class_names is None or recorded == class_names
    head_kept = same_classes and all(k in state and state[k].shape == own[k].shape for k in head)
    if not head_kept:
        state = {k: v for k, v in state.items() if k not in head}
    # FrozenBatchNorm2d (a frozen layer's export) keeps no num_batches_tracked: bookkeeping only
    misfit = [
        k
        for k in own.keys() - head
        if (k not in state and not k.endswith("num_batches_tracked"))
        or (k in state and state[k].shape != own[k].shape)
    ]
    misfit += [k for k in state.keys() - own.keys()]
    if misfit:
        raise ConfigError(
            "backbone.weights",
            str(path),
            f"the file does not fit {type(model).__name__} ({len(misfit)} tensors differ, e.g. {misfit[0]})",
            "use weights saved from the same backbone.name",
        )
    model.load_state_dict(state, strict=False)
    return head_kept


def export_model(model: nn.Module, directory: Path, meta: dict[str, Any]) -> Path:
    """Writes the model's weights (safetensors) and what defines it (JSON) to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / EXPORT_WEIGHTS))
    (directory / EXPORT_META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory / EXPORT_WEIGHTS


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
