"""Fine-tuning methods: partial leaves frozen layers bit-identical, gradual unfreezing opens
groups at the right epochs (also across two DDP processes), the LR table is what the optimizer
holds, LoRA trains only adapters and head, EMA weights are the ones tested and exported."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from safetensors.torch import load_file

from datamodules.digits import DigitsDataModule
from paradigms.finetune.lr_groups import lr_table
from paradigms.finetune.methods import Gradual, Lora, Partial
from paradigms.finetune.paradigm import Finetune
from paradigms.models.backbone import create_pretrained
from paradigms.runner.errors import ConfigError
from paradigms.runner.stages import Stages
from tests.helpers import FAST, base_model_file, cli, quiet_trainer, run_dirs

OPTIMIZER = {"name": "adamw", "lr": 1e-2, "weight_decay": 0.01}
SCHEDULER = {"name": "cosine", "warmup_fraction": 0.0, "min_lr_ratio": 0.01}
SPEC = {"name": "test_resnet", "in_chans": 3}
TOP = ("fc.", "layer4.")  # test_resnet's head and its top block group


@pytest.fixture(scope="module")
def base_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return base_model_file(tmp_path_factory.mktemp("base"), scaled_norms=True)


def _digits() -> DigitsDataModule:
    data = DigitsDataModule(train_per_class=10, batch_size=16)
    data.setup("fit")
    return data


def _trainer(epochs: int, *callbacks: Callback) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    return quiet_trainer(max_epochs=epochs, callbacks=list(callbacks))


def _finetune(**settings) -> Finetune:
    return Finetune(OPTIMIZER, SCHEDULER, baseline=None, **settings)


def _prepared(finetune: Finetune, base_file: Path):
    model, _ = create_pretrained({**SPEC, "weights": str(base_file)}, 10)
    prepared = finetune.method.prepare(model, finetune.bn_mode)
    return prepared, finetune.module(prepared, 10, OPTIMIZER["lr"], "test")


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("bn_mode", ["frozen", "eval", "train"])
def test_partial_leaves_frozen_layers_bit_identical(base_file: Path, bn_mode: str):
    finetune = _finetune(method=Partial(last_groups=1), bn_mode=bn_mode)
    prepared, module = _prepared(finetune, base_file)
    before = _state(prepared.model)
    _trainer(2).fit(module, datamodule=_digits())
    after = prepared.model.state_dict()
    frozen = [k for k in before if not k.startswith(TOP) and "num_batches" not in k]
    stats = [k for k in frozen if "running_" in k]
    assert "conv1.0.weight" in frozen and "layer3.0.bn1.running_mean" in stats
    for key in set(frozen) - set(stats):
        assert torch.equal(before[key], after[key]), f"frozen {key} moved"
    moved = [k for k in stats if not torch.equal(before[k], after[k])]
    assert bool(moved) == (bn_mode == "train"), moved  # only bn_mode=train adapts statistics
    assert not torch.equal(before["layer4.0.conv1.weight"], after["layer4.0.conv1.weight"])
    assert not torch.equal(before["fc.weight"], after["fc.weight"])


class EpochStates(Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.states.append(_state(pl_module.model))


def _moved(before: dict, after: dict, prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix) and "num_batches" not in k]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_gradual_unfreezes_one_group_per_epoch_from_the_top(base_file: Path):
    prepared, module = _prepared(_finetune(method=Gradual(every=1)), base_file)
    start, states = _state(prepared.model), EpochStates()
    _trainer(3, states).fit(module, datamodule=_digits())
    order = ["fc.", "layer4.", "layer3.", "layer2."]  # depth 0, 1, 2, 3
    for epoch, state in enumerate(states.states):
        for depth, prefix in enumerate(order):
            assert _moved(start, state, prefix) == (depth <= epoch), (epoch, prefix)


def test_lr_table_is_what_the_optimizer_holds_after_the_schedule_steps(base_file: Path):
    finetune = _finetune(
        lr_groups={"head_lr_mult": 10.0, "layer_decay": 0.5}, mixup={"mixup_alpha": 0.4}
    )
    prepared, module = _prepared(finetune, base_file)
    lr = OPTIMIZER["lr"]
    rows = {name: row_lr for name, _, _, row_lr in lr_table(prepared.model, module.param_groups)}
    assert rows["head"] == pytest.approx(10 * lr)
    assert rows["layer4.0"] == pytest.approx(0.5 * lr)
    assert rows["layer3.0"] == pytest.approx(0.25 * lr)
    trainer = _trainer(1)
    trainer.fit(module, datamodule=_digits())
    groups = trainer.optimizers[0].param_groups
    multiplier = groups[0]["lr"] / groups[0]["initial_lr"]
    assert multiplier < 1.0  # the cosine schedule has stepped
    for group in groups:
        assert group["initial_lr"] == pytest.approx(rows[group["name"].split("/")[0]])
        assert group["lr"] == pytest.approx(group["initial_lr"] * multiplier)
        assert group["weight_decay"] == (0.0 if group["name"].endswith("/no_wd") else 0.01)


def test_lora_trains_only_adapters_and_head_and_exports_merged_weights(base_file: Path):
    finetune = _finetune(method=Lora(r=2, alpha=4, target_modules=r".*\.conv\d"))
    prepared, module = _prepared(finetune, base_file)
    learning = [n for n, p in prepared.model.named_parameters() if p.requires_grad]
    assert learning and all("lora_" in n or ".fc." in n for n in learning), learning
    assert any(".fc." in n for n in learning)
    before = _state(prepared.model)
    trainer = _trainer(2, *module.configure_callbacks())
    data = _digits()
    trainer.fit(module, datamodule=data)
    trainer.test(module, datamodule=data, verbose=False)
    after = prepared.model.state_dict()
    for key, value in before.items():
        learns = "lora_" in key or ".fc." in key
        assert torch.equal(value, after[key]) != learns, key
    merged = prepared.export.eval()
    assert not torch.equal(
        merged.state_dict()["layer1.0.conv1.weight"],
        load_file(str(base_file))["layer1.0.conv1.weight"],
    )
    x = torch.randn(4, 3, 32, 32)
    prepared.model.eval()
    torch.testing.assert_close(merged(x), prepared.model(x), rtol=1e-4, atol=1e-4)


def test_ema_weights_differ_from_raw_and_are_tested_and_exported(base_file: Path, tmp_path: Path):
    prepared, module = _prepared(_finetune(ema_decay=0.9), base_file)
    stages = Stages(
        trainer={
            "_target_": "pytorch_lightning.Trainer",
            "max_epochs": 2,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "use_distributed_sampler": False,
        },
        callbacks={
            "model_checkpoint": {
                "_target_": "pytorch_lightning.callbacks.ModelCheckpoint",
                "save_last": True,
            }
        },
        loggers={},
        seed=0,
    )
    data = _digits()
    metrics = stages.fit_and_test(module, data, tmp_path)
    (best,) = (tmp_path / "checkpoints").glob("epoch=*.ckpt")
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    ema, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not torch.equal(ema["model.fc.weight"], raw["model.fc.weight"])
    exported = load_file(str(tmp_path / "model.safetensors"))
    for key, value in exported.items():
        assert torch.equal(value, ema[f"model.{key}"]), key

    def test_acc(state: dict[str, torch.Tensor]) -> float:
        prepared.model.load_state_dict({k[len("model.") :]: v for k, v in state.items()})
        prepared.model.eval()
        with torch.no_grad():
            pairs = [(prepared.model(x).argmax(1), y) for x, y in data.test_dataloader()]
        return float(sum((p == y).sum() for p, y in pairs) / sum(len(y) for _, y in pairs))

    assert test_acc(ema) == pytest.approx(metrics["test/acc"])


@pytest.mark.parametrize(
    "method,key",
    [
        (Partial(last_groups=9), "paradigm.method.last_groups"),
        (Partial(last_groups=0, patterns=["nope"]), "paradigm.method.patterns"),
        (Lora(target_modules="nope"), "paradigm.method.target_modules"),
    ],
)
def test_method_settings_the_backbone_cannot_honour_stop_before_training(method, key: str):
    with pytest.raises(ConfigError) as error:
        _finetune(method=method).check("test_resnet")
    assert error.value.key == key


def test_gradual_under_ddp_holds_groups_bit_identical_until_their_epoch(tmp_path: Path):
    cli(
        *FAST,
        "trainer=ddp_cpu",
        "paradigm/method=gradual",
        "paradigm.bn_mode=eval",  # held groups' statistics stay too
        "compare=none",
        "source.max_epochs=1",
        "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.filename='epoch-{epoch}'",
        output_root=tmp_path,
    )
    (run_dir,) = run_dirs(tmp_path, "finetune")
    (source,) = (tmp_path / "cache" / "source").glob("*/model.safetensors")
    start = {f"model.{k}": v for k, v in load_file(str(source)).items()}
    states = [
        torch.load(run_dir / "checkpoints" / f"epoch-{e}.ckpt", weights_only=True)["state_dict"]
        for e in (0, 1)
    ]
    for epoch, state in enumerate(states):
        for depth, prefix in enumerate(["model.fc.", "model.layer4.", "model.layer3."]):
            assert _moved(start, state, prefix) == (depth <= epoch), (epoch, prefix)
        assert not _moved(start, state, "model.conv1.")


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["paradigm/method=sideways"], "paradigm/method"),
        (["paradigm.bn_mode=thawed"], "paradigm.bn_mode"),
        (
            ["paradigm/method=partial", "paradigm.method.last_groups=0"],
            "paradigm.method.last_groups",
        ),
        (["paradigm/method=gradual", "paradigm.method.every=0"], "paradigm.method.every"),
    ],
)
def test_cli_stops_bad_method_settings_with_one_line(overrides: list[str], key: str, out: Path):
    process = cli(*overrides, output_root=out, check=False)
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}="), process.stderr


@pytest.mark.filterwarnings("error:LoRA adapter added")  # an adapter that cannot merge
@pytest.mark.parametrize("yaml", sorted(Path("conf/backbone").glob("*.yaml")), ids=lambda p: p.stem)
def test_the_default_lora_targets_fit_every_shipped_backbone(yaml: Path):
    import timm
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    lora = instantiate(OmegaConf.load("conf/paradigm/method/lora.yaml"))
    name = OmegaConf.load(yaml).name
    model = timm.create_model(name, pretrained=False, num_classes=10)
    lora.check(model, name)
    prepared = lora.prepare(model, "frozen")
    adapters = [n for n, p in prepared.model.named_parameters() if "lora_" in n]
    merged = copy.deepcopy(prepared.model).merge_and_unload()  # as MergedExport does
    prepared.export.load_state_dict(merged.state_dict())
    assert adapters and all(
        p.requires_grad for n, p in prepared.model.named_parameters() if "lora_" in n
    )
