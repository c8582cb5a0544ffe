"""Bad input stops before training: exit code 2, ONE line naming the key, nothing written
(distillation on image files, for one, trains no teacher before it is refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import FAST, cli, run_dirs, summary

BAD = [
    ("paradigm.optimizer.lr=-1", "paradigm.optimizer.lr"),
    ("paradigm.optimizer.lr=fast", "paradigm.optimizer.lr"),
    ("paradigm.optimizer.weight_decay=-0.1", "paradigm.optimizer.weight_decay"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("trainer.max_epochs=2.5", "trainer.max_epochs"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("data.test_fraction=0", "data.test_fraction"),
    ("data.val_fraction=0.6 data.test_fraction=0.5", "data.val_fraction"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.train_per_class=-3", "data.train_per_class"),
    ("backbone.name=resnet_18", "backbone.name"),
    ("backbone.weights=/no/such/file.safetensors", "backbone.weights"),
    ("backbone.in_chans=0", "backbone.in_chans"),
    ("seed=-1", "seed"),
    ("optimized_metric=accuracy", "optimized_metric"),
    ("optimized_metric=test/accuracyy", "optimized_metric"),
    ("compare=single_task", "compare"),
    ("resume=/no/such/run", "resume"),
    ("paradigm.label_smoothing=1.5", "paradigm.label_smoothing"),
    ("paradigm.scheduler.name=step", "paradigm.scheduler.name"),
    ("nonfinite=ignore", "nonfinite"),
    ("threads=0", "threads"),
    ("paradigm=finetune backbone.weights=none", "backbone.weights"),
    ("paradigm=scratch data=image_folder", "data.root"),
    ("paradigm=scratch data=image_folder data.root=/no/such/folder", "data.root"),
    ("paradigm=scratch data=image_folder data.root=. data.in_memory=maybe", "data.in_memory"),
    (
        "paradigm=federated paradigm/partition=dirichlet paradigm.partition.alpha=0",
        "paradigm.partition.alpha",
    ),
    ("paradigm=federated paradigm.fraction=1.5", "paradigm.fraction"),
    (
        "paradigm=federated paradigm/partition=shards paradigm.partition.shards_per_client=1000",
        "paradigm.partition.shards_per_client",
    ),
    (
        "paradigm=transfer paradigm.cache_features=true paradigm.replace_last_blocks=1",
        "paradigm.cache_features",
    ),
    (
        "paradigm=multitask paradigm/weighting=pcgrad trainer.accumulate_grad_batches=2",
        "trainer.accumulate_grad_batches",
    ),
    ("paradigm/method=sideways", "paradigm/method"),
    ("paradigm=no_such", "paradigm"),
    ("backbone=resnet34", "backbone"),
    ("paradigm=federated paradigm/strategy=fedsgd", "paradigm/strategy"),
    ("paradigm=federated paradigm.client_dropout=1", "paradigm.client_dropout"),
    # what a paradigm needs of the data, the trainer and the loggers (paradigms.contract.Needs)
    (
        "paradigm=federated paradigm/partition=by_column paradigm.partition.column=writer",
        "paradigm.partition.column",
    ),
    ("paradigm=federated paradigm/partition=by_column", "paradigm.partition.column"),
    ("paradigm=distill data=image_folder data.root=tests", "paradigm.cache_teacher"),
    ("paradigm=federated trainer=ddp_cpu paradigm.num_clients=2", "trainer.devices"),
    ("paradigm=federated trainer.precision=16-mixed", "trainer.precision"),
    # a source stage that would train on the target's test images (checked before training)
    ("paradigm=transfer source.data.classes=null", "source.data"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD, ids=[o for o, _ in BAD])
def test_bad_input_is_one_line_naming_the_key_and_writes_nothing(
    overrides: str, key: str, out: Path
) -> None:
    process = cli(*overrides.split(), output_root=out, check=False, timeout=180)
    assert process.returncode == 2, process.stderr[-2000:]
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr[-2000:]
    assert lines[0].startswith(f"error: {key}=") and "Fix:" in lines[0], lines[0]
    assert "Traceback" not in process.stdout + process.stderr
    assert not out.exists() or not any(out.iterdir()), f"outputs/ gained {list(out.rglob('*'))[:5]}"


def test_a_diverging_loss_stops_cleanly_keeping_the_last_good_checkpoint(out: Path) -> None:
    process = cli(
        "paradigm=scratch", *FAST, "paradigm.optimizer.lr=1e6", output_root=out, check=False
    )
    assert process.returncode == 3, process.stderr[-2000:]
    line = process.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the training loss is") and "step" in line and "Fix:" in line, (
        line
    )
    (run_dir,) = run_dirs(out, "scratch")
    assert not (run_dir / "summary.json").exists()


def test_nonfinite_skip_drops_bad_steps_and_finishes(out: Path) -> None:
    cli("paradigm=scratch", *FAST, "paradigm.optimizer.lr=1e6", "nonfinite=skip", output_root=out)
    (run_dir,) = run_dirs(out, "scratch")
    assert "test/acc" in summary(run_dir)["metrics"]
