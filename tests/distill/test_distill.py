"""Distillation: the KD loss is Hinton's formula, the teacher stays frozen and in eval mode,
cached teacher outputs change nothing, and the CLI reports teacher, student and baseline."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from datamodules.digits import DigitsDataModule
from datamodules.labels import IGNORE
from paradigms.distill.module import (
    DistillationModule,
    Teacher,
    TeacherInput,
    cache_teacher_outputs,
    kd_loss,
    with_transfer_set,
)
from paradigms.distill.paradigm import Distill
from paradigms.models.backbone import create_model
from paradigms.runner.errors import ConfigError
from tests.helpers import FAST, cli, quiet_trainer, run_dirs, summary

OPTIMIZER = {"name": "adamw", "lr": 3e-3, "weight_decay": 0.05}
SCHEDULER = {"name": "constant", "warmup_fraction": 0.0}


def _softmax(values: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_kd_loss_is_hintons_formula_with_the_t_squared_factor() -> None:
    student = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]
    teacher = [[1.0, 1.0, 0.0], [-1.0, 2.0, 2.5]]
    labels = [0, 2]
    temperature, alpha = 2.0, 0.3
    ce = sum(-math.log(_softmax(s, 1.0)[y]) for s, y in zip(student, labels, strict=True)) / 2
    kl = 0.0
    for s, t in zip(student, teacher, strict=True):
        p, q = _softmax(t, temperature), _softmax(s, temperature)
        kl += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True)) / 2
    args = (torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), temperature)
    loss = kd_loss(*args, alpha, nn.CrossEntropyLoss())
    assert loss.item() == pytest.approx(alpha * ce + (1 - alpha) * temperature**2 * kl, rel=1e-6)
    soft_only = kd_loss(*args, 0.0, nn.CrossEntropyLoss())
    assert soft_only.item() == pytest.approx(4.0 * kl, rel=1e-6), "KL is scaled by T^2"


def test_unlabelled_examples_teach_through_the_kd_term_only() -> None:
    student = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [-1.0, 2.0, 2.5]])
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE)
    hidden = torch.tensor([IGNORE, IGNORE])
    soft_only = kd_loss(student, teacher, torch.tensor([0, 2]), 2.0, 0.0, criterion)
    assert kd_loss(student, teacher, hidden, 2.0, 0.5, criterion).item() == pytest.approx(
        0.5 * soft_only.item()
    ), "a batch without labels has no CE term (not NaN)"
    one = kd_loss(student, teacher, torch.tensor([0, IGNORE]), 2.0, 1.0, criterion)
    assert one.item() == pytest.approx(
        nn.functional.cross_entropy(student[:1], torch.tensor([0])).item()
    )
    labelled = _digits().splits["train"]
    both = with_transfer_set(labelled, _digits(train_per_class=None).splits["train"])
    assert len(both) > len(labelled) and (both.tensors[1][len(labelled) :] == IGNORE).all()


def _digits(**kwargs) -> DigitsDataModule:
    data = DigitsDataModule(**{"train_per_class": 10, "batch_size": 16, **kwargs})
    data.setup("fit")
    return data


def _module(feature_weight: float = 1.0) -> DistillationModule:
    torch.manual_seed(0)
    teacher = Teacher(
        TeacherInput(0.5, 0.5, 0.5, 0.5, 32), create_model({"name": "test_resnet"}, 10)
    )
    student = create_model({"name": "test_efficientnet"}, 10)
    return DistillationModule(
        student, teacher, 10, OPTIMIZER, SCHEDULER, 4.0, 0.5, feature_weight, 32, 3
    )


class TeacherMode(pl.Callback):
    """Records whether the teacher was in training mode at every training step."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.modes.append(any(m.training for m in pl_module.teacher.modules()))


def test_teacher_weights_do_not_change_and_it_stays_in_eval_mode() -> None:
    module = _module(feature_weight=1.0)  # student and teacher features differ: 256 -> 96
    assert isinstance(module.projection, nn.Linear)
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in module.model.state_dict().items()}
    modes = TeacherMode()
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=1, callbacks=[modes])
    trainer.fit(module, datamodule=_digits())
    assert modes.modes and not any(modes.modes), "the teacher left eval mode"
    assert all(not p.requires_grad for p in module.teacher.parameters())
    after = module.teacher.state_dict()
    assert all(torch.equal(teacher_before[k], after[k]) for k in after), "teacher changed"
    assert any(
        not torch.equal(student_before[k], v) for k, v in module.model.state_dict().items()
    ), "the student did not learn"


def test_cached_teacher_outputs_give_the_same_loss_as_running_the_teacher() -> None:
    module = _module(feature_weight=1.0)
    data = _digits()
    cached = cache_teacher_outputs(module, data.splits["train"], batch_size=7)
    assert len(cached.tensors) == 4, "images, labels, teacher logits, teacher features"
    module.train()
    for start in range(0, len(cached), 16):
        indices = torch.arange(start, min(start + 16, len(cached)))
        batch, plain = cached[indices], data.splits["train"][indices]
        with_cache = module.loss(module(batch[0]), batch)
        without = module.loss(module(plain[0]), plain)
        assert with_cache.item() == pytest.approx(without.item(), rel=1e-6)


def test_teacher_input_bridges_normalisation_and_size() -> None:
    student = _digits(mean=0.5, std=0.5).splits["test"].tensors[0]
    teacher = _digits(mean=0.2, std=0.3).splits["test"].tensors[0]
    assert torch.allclose(TeacherInput(0.5, 0.5, 0.2, 0.3, 32)(student), teacher, atol=1e-5)
    assert TeacherInput(0.5, 0.5, 0.5, 0.5, 16)(student).shape[-2:] == (16, 16)


TEACHER = [
    "paradigm=distill",
    "paradigm.teacher.name=test_resnet",
    "paradigm.teacher.img_size=24",  # a teacher of another size and normalisation: bridged
    "paradigm.teacher.mean=0.2",
    "paradigm.teacher.std=0.3",
    "paradigm.teacher_source.max_epochs=3",
]


def test_cli_distills_and_caching_changes_nothing(tmp_path) -> None:
    out = tmp_path / "outputs"
    cli(*FAST, *TEACHER, output_root=out)
    (teacher_dir,) = (out / "cache" / "source").iterdir()
    given = f"paradigm.teacher.weights={teacher_dir}"  # a teacher given as a run directory
    cli(*FAST, *TEACHER, given, "paradigm.cache_teacher=false", "compare=none", output_root=out)
    cached, fresh = (summary(d) for d in run_dirs(out, "distill"))
    metrics = cached["metrics"]
    for key in ("test/acc", "teacher/test/acc", "scratch/test/acc", "test/agreement"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["teacher/test/acc"] > 0.5, "the teacher trained on every label, at its size"
    assert metrics["test/ms_per_image"] > 0 and metrics["teacher/test/ms_per_image"] > 0
    assert [r["name"] for r in cached["rows"]] == ["teacher", "student + KD", "student alone"]
    assert fresh["metrics"]["teacher/test/acc"] == metrics["teacher/test/acc"]
    # Same losses step for step; CPU kernels round a batch of 13 and one of 256 differently in
    # the last bit, which a few epochs can grow to about one test image.
    for key in ("test/acc", "test/agreement"):
        assert fresh["metrics"][key] == pytest.approx(metrics[key], abs=1.5 / 270), key
    assert fresh["metrics"]["test/loss"] == pytest.approx(metrics["test/loss"], rel=0.05)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("paradigm.teacher.weights=none", "paradigm.teacher.weights"),
        ("paradigm.teacher.name=resnet19", "paradigm.teacher.name"),
        ("paradigm.alpha=1.5", "paradigm.alpha"),
    ],
)
def test_bad_teacher_config_stops_with_one_line(tmp_path, override: str, key: str) -> None:
    process = cli(*FAST, "paradigm=distill", override, output_root=tmp_path, check=False)
    assert process.returncode == 2
    assert process.stderr.strip().count("\n") == 0 and key in process.stderr


def test_cached_teacher_outputs_are_refused_under_random_augmentation() -> None:
    """Outputs cached on the plain images would not be the teacher's on the shifted ones the
    student sees: the run stops before the teacher is built or trained."""
    shifted = DigitsDataModule(translate=0.1)
    distill = Distill({}, {}, OPTIMIZER, SCHEDULER, baseline=None)
    with pytest.raises(ConfigError, match="paradigm.cache_teacher=True.*randomly augmented"):
        distill.run(SimpleNamespace(datamodule=lambda: shifted))
    Distill({}, {}, OPTIMIZER, SCHEDULER, baseline=None, cache_teacher=False).check_cache(shifted)
    distill.check_cache(DigitsDataModule())  # no augmentation: the cache is exact
