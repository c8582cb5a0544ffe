"""Multi-task pieces on known numbers: masking, the weightings, Delta_m, the digits labels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from datamodules.csv_images import CsvDataModule
from datamodules.labels import IGNORE
from datamodules.multitask_digits import MultiTaskDigitsDataModule
from paradigms.multitask.model import MultiTaskModel, build_model
from paradigms.multitask.module import MultiTaskModule
from paradigms.multitask.paradigm import delta_m
from paradigms.multitask.schema import METRICS as TASK_METRICS
from paradigms.multitask.schema import GradNorm as GradNormSchema
from paradigms.multitask.schema import MultiTask as MultiTaskSchema
from paradigms.multitask.tasks import METRICS, Task, parse_tasks
from paradigms.multitask.weighting import DWA, CAGrad, GradNorm, PCGrad, Uncertainty
from paradigms.runner.errors import ConfigError
from paradigms.runner.guards import NonFiniteGuard, NonFiniteLoss
from paradigms.runner.validation import check_node
from tests.helpers import ROOT, quiet_trainer

NAN = float("nan")
DIGIT = Task("digit", "multiclass", 3, "cross_entropy", ["acc"], "max")
PARITY = Task("parity", "binary", 1, "bce", ["acc"], "max")
INK = Task("ink", "regression", 1, "mse", ["mse", "mae"], "min")


@pytest.mark.parametrize(
    ("task", "target"),
    [
        (DIGIT, torch.tensor([0.0, NAN, 2.0, NAN, 1.0])),
        (PARITY, torch.tensor([1.0, NAN, 0.0, NAN, 1.0])),
        (INK, torch.tensor([0.2, NAN, 0.7, NAN, 0.1])),
        (DIGIT, torch.tensor([0, IGNORE, 2, IGNORE, 1])),
        (PARITY, torch.tensor([1, IGNORE, 0, IGNORE, 1])),
    ],
    ids=["digit", "parity", "ink", "digit_class_index", "parity_class_index"],
)
def test_masked_labels_contribute_nothing(task: Task, target: torch.Tensor) -> None:
    logits = torch.randn(5, task.num_outputs, generator=torch.Generator().manual_seed(0))
    logits.requires_grad_(True)
    loss = task.loss_value(logits, target)
    loss.backward()
    assert logits.grad[[1, 3]].abs().sum() == 0, "a missing label must not produce a gradient"
    kept = [0, 2, 4]
    assert torch.allclose(loss, task.loss_value(logits[kept], target[kept]))
    changed = logits.detach().clone()
    changed[[1, 3]] = 100.0
    assert torch.allclose(loss, task.loss_value(changed, target))

    masked, clean = task.metric_collection(""), task.metric_collection("")
    task.update(masked, changed, target)
    task.update(clean, logits.detach()[kept], target[kept])
    for name, value in clean.compute().items():
        assert torch.allclose(masked.compute()[name], value)


def test_a_batch_without_labels_gives_an_exact_zero_in_the_graph() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    loss = DIGIT.loss_value(logits, torch.full((4,), NAN))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.abs().sum() == 0


def test_pcgrad_projects_conflicting_gradients() -> None:
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # dot product -1: they conflict
    update = PCGrad([1.0, 1.0]).combine(grads, torch.ones(2), torch.zeros(0, 2), step=0)
    # g1 - (g1.g2 / |g2|^2) g2 = [0.5, 0.5]; g2 - (g2.g1 / |g1|^2) g1 = [0, 1]
    assert torch.allclose(update, torch.tensor([0.5, 1.5]))
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    same = PCGrad([1.0, 1.0]).combine(agreeing, torch.ones(2), torch.zeros(0, 2), step=0)
    assert torch.allclose(same, agreeing.sum(0)), "gradients that agree are left alone"


def test_cagrad_without_radius_is_the_plain_sum() -> None:
    grads = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5]])
    update = CAGrad([1.0, 1.0], c=0.0).combine(grads, torch.ones(2), torch.zeros(0, 2), step=0)
    assert torch.allclose(update, grads.sum(0), atol=1e-5)
    helped = CAGrad([1.0, 1.0], c=0.4).combine(grads, torch.ones(2), torch.zeros(0, 2), step=0)
    assert (grads @ helped).min() > 0, "the conflict-averse update improves every task"


def test_uncertainty_weights_are_learnable_and_change() -> None:
    weighting = Uncertainty([1.0, 1.0])
    module = MultiTaskModule(
        build_model({"name": "test_resnet", "in_chans": 3}, [DIGIT, PARITY], {}),
        [DIGIT, PARITY],
        weighting,
        {"name": "adamw", "lr": 0.1},
        {"name": "constant"},
    )
    assert any(p is weighting.log_vars for p in module.parameters())
    before = weighting.weights(torch.zeros(0, 2)).detach().clone()
    opt = torch.optim.Adam(weighting.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        weighting.loss(torch.tensor([2.0, 0.1]), torch.zeros(0, 2)).backward()
        opt.step()
    after = weighting.weights(torch.zeros(0, 2)).detach()
    assert not torch.allclose(before, after)
    assert after[0] < after[1], "the noisier (higher-loss) task is down-weighted"


def test_dwa_raises_the_weight_of_the_slower_task() -> None:
    history = torch.tensor([[1.0, 1.0], [0.5, 1.0]])  # task 0 halved its loss, task 1 did not
    weights = DWA([1.0, 1.0]).weights(history)
    assert weights[1] > weights[0] and math.isclose(weights.sum().item(), 2.0, rel_tol=1e-6)
    assert torch.equal(DWA([1.0, 1.0]).weights(history[:1]), torch.ones(2))


def test_gradnorm_keeps_weights_summing_to_the_task_count() -> None:
    method = GradNorm([1.0, 1.0])
    grads = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    method.combine(grads, torch.tensor([1.0, 1.0]), torch.zeros(0, 2), step=0)
    method.combine(grads, torch.tensor([0.5, 1.0]), torch.zeros(0, 2), step=1)
    assert math.isclose(method.current.sum().item(), 2.0, rel_tol=1e-6)
    assert method.current[1] > method.current[0], "the small-gradient, slow task gains weight"


def _gradnorm_step(weights: torch.Tensor, norms, ratio, alpha: float, lr: float) -> torch.Tensor:
    """Chen et al.'s step by autograd: d L_grad / d w with the target held constant."""
    w = weights.clone().requires_grad_(True)
    scaled = w * norms
    target = (scaled.mean() * ratio**alpha).detach()
    (slope,) = torch.autograd.grad((scaled - target).abs().sum(), w)
    moved = w.detach() - lr * slope
    return moved * len(moved) / moved.sum()


def test_gradnorm_paper_update_follows_the_gradient_of_its_loss() -> None:
    torch.manual_seed(0)
    last = nn.Linear(6, 5)
    heads = {"digit": nn.Linear(5, 3), "parity": nn.Linear(5, 1)}
    model = MultiTaskModel(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), last), nn.Sequential(), heads)
    method = GradNorm([1.0, 1.0], alpha=1.5, lr=0.1, update="paper")
    module = MultiTaskModule(model, [DIGIT, PARITY], method, {"name": "sgd"}, {})
    assert method.layer == slice(30, 60), "the last shared weight, after 4x6 + 6 entries"
    x = torch.randn(8, 4)
    outputs = module(x)
    losses = torch.stack(
        [
            DIGIT.loss_value(outputs["digit"], torch.randint(0, 3, (8,))),
            PARITY.loss_value(outputs["parity"], torch.randint(0, 2, (8,)).float()),
        ]
    )
    shared = model.shared_parameters()
    rows = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)])
            for loss in losses
        ]
    )
    norms = torch.stack(
        [torch.autograd.grad(loss, last.weight, retain_graph=True)[0].norm() for loss in losses]
    )
    losses = losses.detach()
    expected = _gradnorm_step(torch.ones(2), norms, torch.ones(2), 1.5, 0.1)  # first: r = 1
    method.combine(rows, losses, torch.zeros(0, 2), step=0)
    torch.testing.assert_close(method.current, expected)
    later = losses * torch.tensor([0.5, 0.9])  # digit trains faster: r = (0.5, 0.9) / 0.7
    ratio = torch.tensor([0.5, 0.9]) / 0.7
    expected = _gradnorm_step(method.current.clone(), norms, ratio, 1.5, 0.1)
    method.combine(rows, later, torch.zeros(0, 2), step=1)
    torch.testing.assert_close(method.current, expected)
    assert math.isclose(method.current.sum().item(), 2.0, rel_tol=1e-6)
    assert not torch.allclose(method.current, torch.ones(2)), "the weights did not move"


def test_gradnorm_update_is_one_of_the_two() -> None:
    node = {"alpha": 1.5, "lr": 0.025, "update": "papr"}
    with pytest.raises(ConfigError, match="must be one of sign, paper") as error:
        check_node(node, "paradigm.weighting", GradNormSchema)
    assert error.value.key == "paradigm.weighting.update"
    check_node({**node, "update": "paper"}, "paradigm.weighting", GradNormSchema)


def test_delta_m_is_sign_corrected_by_direction() -> None:
    multi = {"test/digit/acc": 0.9, "test/ink/mse": 0.1, "test/ink/mae": 0.2}
    single = {"test/digit/acc": 0.8, "test/ink/mse": 0.2, "test/ink/mae": 0.2}
    assert math.isclose(delta_m([DIGIT, INK], multi, single), 100 * (0.125 + 0.5 + 0.0) / 3)


def test_task_direction_must_match_its_metric() -> None:
    spec = {"type": "regression", "num_outputs": 1, "loss": "mse", "metrics": ["mse"]}
    with pytest.raises(ConfigError, match="direction") as error:
        check_node({"tasks": {"ink": {**spec, "direction": "max"}}}, "paradigm", MultiTaskSchema)
    assert error.value.key == "paradigm.tasks.ink.direction"
    check_node({"tasks": {"ink": {**spec, "direction": "min"}}}, "paradigm", MultiTaskSchema)
    assert parse_tasks({"ink": {**spec, "direction": "min"}})[0].direction == "min"


def test_the_schema_knows_every_metric_a_task_builds_and_its_direction() -> None:
    for kind, metrics in METRICS.items():
        assert set(metrics) == set(TASK_METRICS[kind]), kind
        for name, build in metrics.items():
            better = "max" if build(3).higher_is_better else "min"
            assert TASK_METRICS[kind][name] == better, (kind, name)


def test_digits_carry_one_label_per_task_and_hide_a_share() -> None:
    data = MultiTaskDigitsDataModule(
        tasks=["digit", "rotation", "parity"], missing={"parity": 0.5}, image_size=16
    )
    data.setup("fit")
    images, digit, rotation, parity = data.splits["train"].tensors
    assert images.shape[1:] == (3, 16, 16)
    assert set(rotation.unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert torch.isnan(parity).sum() == round(0.5 * len(parity))
    labelled = ~torch.isnan(parity)
    assert torch.equal(parity[labelled], digit[labelled] % 2)
    assert not any(torch.isnan(t).any() for t in data.splits["val"].tensors[1:])


def test_gradient_methods_honour_gradient_clipping(tmp_path) -> None:
    """One SGD step of lr 1 under clip 1e-3 moves the weights by at most 1e-3."""
    pl.seed_everything(0)
    data = MultiTaskDigitsDataModule(tasks=["digit", "parity"], image_size=16, batch_size=32)
    tasks = [
        Task("digit", "multiclass", 10, "cross_entropy", ["acc"], "max"),
        PARITY,
    ]
    model = build_model({"name": "test_resnet", "in_chans": 3}, tasks, {})
    before = nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    module = MultiTaskModule(
        model,
        tasks,
        PCGrad([1.0, 1.0]),
        {"name": "momentum", "lr": 1.0, "momentum": 0.0},
        {"name": "constant"},
        {"gradient_clip_val": 1e-3, "gradient_clip_algorithm": "norm"},
    )
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=data)
    moved = (nn.utils.parameters_to_vector(model.parameters()) - before).norm().item()
    assert 0 < moved <= 1e-3 * 1.001, moved


@pytest.mark.parametrize("in_memory", [False, True], ids=["files", "in_memory"])
def test_the_csv_datamodule_serves_the_tasks_of_a_real_csv(tmp_path: Path, in_memory: bool) -> None:
    from PIL import Image

    lines = ["path,shape,bright,size"]
    for i in range(20):
        Image.new("RGB", (10, 12), (i * 10, 0, 255 - i * 10)).save(tmp_path / f"img{i}.png")
        size = ("small", "medium", "large")[i % 3]
        lines.append(f"img{i}.png,{i % 3},{'' if i % 4 == 0 else i % 2},{size}")
    table = tmp_path / "labels.csv"
    table.write_text("\n".join(lines) + "\n")
    options = {"root": str(tmp_path), "csv": str(table), "backbone": "test_resnet"}
    options |= {"image_size": 8, "val_fraction": 0.2, "test_fraction": 0.2, "in_memory": in_memory}
    options["loader"] = {"num_workers": 0}
    data = CsvDataModule(tasks=["bright", "shape", "size"], **options)
    assert data.task_outputs == {"bright": None, "shape": None, "size": 3}
    data.setup("fit")
    sizes = {name: len(split) for name, split in data.splits.items()}
    assert sizes == {"val": 4, "test": 4, "train": 12}
    loaders = (data.train_dataloader, data.val_dataloader, data.test_dataloader)
    batches = [batch for make in loaders for batch in make()]
    images, bright, shape, size = (torch.cat(column) for column in zip(*batches, strict=True))
    assert images.shape[1:] == (3, 8, 8) and bright.dtype == shape.dtype == torch.float
    assert torch.isnan(bright).sum() == 5, "the empty cells (rows 0, 4, 8, 12, 16) are missing"
    assert set(shape.tolist()) == {0.0, 1.0, 2.0}, "numbers are served as written"
    assert torch.equal(size, 2 - shape), "names are class indices in sorted order"
    one = CsvDataModule(tasks=["size"], **options)
    one.setup("fit")
    val = next(iter(one.val_dataloader()))
    assert torch.equal(val[0], next(iter(data.val_dataloader()))[0]), "the same split for one task"
    with pytest.raises(ConfigError, match="paradigm.tasks='colour'.*no such column"):
        CsvDataModule(tasks=["colour"], **options).setup("fit")


@pytest.mark.parametrize(
    "path", sorted((ROOT / "conf/paradigm/weighting").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_weighting_config_builds_a_method_that_states_its_cost(path: Path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from paradigms.multitask.weighting import Weighting

    method = instantiate(OmegaConf.load(path))(weights=[1.0, 2.0])
    assert isinstance(method, Weighting)
    assert "Cost:" in type(method).__doc__


@pytest.mark.parametrize("policy", ["stop", "skip"])
@pytest.mark.parametrize("weighting", [GradNorm, PCGrad, CAGrad], ids=lambda w: w.__name__)
def test_the_non_finite_guard_covers_gradient_weightings(tmp_path, weighting, policy) -> None:
    """A NaN loss stops the run (stop) or leaves every weight and task weight as it was (skip)."""
    pl.seed_everything(0)
    tasks = [DIGIT, PARITY]
    images = torch.full((4, 3, 16, 16), NAN)
    batches = TensorDataset(images, torch.tensor([0, 1, 2, 0]), torch.tensor([1.0, 0, 1, 0]))
    model = build_model({"name": "test_resnet", "in_chans": 3}, tasks, {})
    method = weighting([1.0, 1.0])
    module = MultiTaskModule(
        model, tasks, method, {"name": "adamw", "lr": 0.1}, {"name": "constant"}
    )
    # The learned state: the forward still moves BatchNorm statistics, as in automatic mode.
    learned = lambda: dict(module.named_parameters()) | dict(method.named_buffers())  # noqa: E731
    before = {k: v.detach().clone() for k, v in learned().items()}
    guard = NonFiniteGuard(policy)
    trainer = quiet_trainer(
        max_steps=2, limit_val_batches=0, callbacks=[guard], default_root_dir=str(tmp_path)
    )
    if policy == "stop":
        with pytest.raises(NonFiniteLoss):
            trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=2))
    else:
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=2))
        assert guard.skipped == 2 and trainer.global_step == 2
    changed = [k for k, v in learned().items() if not torch.equal(v, before[k])]
    assert not changed, f"{len(changed)} tensors changed, e.g. {changed[0]}"


def test_gradnorm_waits_for_a_task_s_first_labels_before_its_initial_loss() -> None:
    method = GradNorm([1.0, 1.0])
    grads = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    method.combine(grads, torch.tensor([1.0, 0.0]), torch.zeros(0, 2), step=0)  # no parity labels
    method.combine(grads, torch.tensor([0.9, 0.7]), torch.zeros(0, 2), step=1)
    assert torch.isfinite(method.current).all() and method.current.min() > 0.5, method.current
    assert method.initial_losses[1] == 0.7, "the first labelled loss is the task's L0"
