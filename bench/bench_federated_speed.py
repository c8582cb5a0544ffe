"""Speed: this runner's federated simulation against Flower 1.42 and a bare PyTorch loop, each
timed as a whole process, from launch to exit, in one sitting.

The task (issue 18): digits, 20 clients (Dirichlet 0.5), fraction 0.5 (10 clients a round),
mobilenetv3_small_050 at 32 px, batch 32, plain SGD lr 0.05, 10 rounds, E=1 and E=5 local
epochs. Every side has the same client split and initial weights: the harness makes the
runner's own split and initial model (same seed, same partition stream) and writes them to a
task file that Flower (``flower_fedavg.py``, in a virtualenv this bench makes: Ray backend,
Flower's FedAvg with centralized evaluation) and the bare loop (``bare_fedavg.py``) read.
Variants: Flower with 1 and with 2 Ray actors, bare torch, and this runner with
``engine=loop`` on 1 process, on 2 (``trainer=ddp_cpu``: the command re-executed; and forked,
``trainer.strategy=ddp_fork``: the imports not paid twice) and with ``engine=vmap``. The
runner lays this model's weights out channels-last by default on a CPU
(``callbacks.accelerate.channels_last: auto``); so that the table shows what that layout is
worth by itself, the runner also runs in standard layout, and Flower (2 actors) and the bare
loop also run channels-last, applied by hand. Each
repeat runs every variant once, in turn, with seed r in repeat r; seconds are medians over
the repeats, accuracy a mean with its 95% interval, and each variant's accuracy minus Flower's
(2 actors), paired by seed, in points with its 95% interval. Every side evaluates after every round
(the runner on its validation split, then the selected round on test; the others on test).

Where the runner's seconds go, from its files: start-up (launch to the paradigm: Python,
imports, Hydra, validation), set-up and report (data, partition, model, Fabric, and the second
process under ddp_cpu; test, export, the paradigm's plots), training and evaluation
(``metrics.csv``'s ``time/round_s`` and ``time/eval_s``), and summary + exit (the summary, the
learning-curve plot, the interpreter's exit); for Flower and the bare loop, their imports
(start-up) and their rounds (training and evaluation). Each side samples its own clients a round.

The ``imports_*`` variants time a process that imports some libraries and leaves at once (as
the runner leaves, without Python's teardown): torch and timm; with Lightning Fabric (what any
Fabric run of a timm model imports); and all the libraries the runner's federated run imports.
The table's last column puts the runner's training and evaluation after ``imports_fabric``'s
seconds, with nothing else: the most a Fabric runner could reach with these rounds.

``--core`` runs every side from a core install, as ``make run`` installs this project
(``pip install -e .``, no optional extras): the bench runs itself again with the python of
``bench/runs/core-venv`` (``make install`` into it), and Flower's venv is made from that one. The
development venv holds every extra, and two of them load at start-up whether used or not
(transformers through torchmetrics, wandb through timm).

``--device cuda`` runs the task on one GPU (issue 18's GPU check): Flower with 1, 2 and 4
actors sharing it (each asks Ray for 1/K of the GPU, as Flower's guide does), the bare loop, and
this runner with ``engine=loop`` and ``engine=vmap`` (``trainer=gpu``). The table also gives the
rounds alone as rounds a second against Flower's best; Flower's include starting Ray and its
actors.

    python bench/bench_federated_speed.py [--repeats 3] [--epochs 1 5] [--only runner_loop,...]
    python bench/bench_federated_speed.py --core ...  # every side without the optional extras
    python bench/bench_federated_speed.py --device cuda ...  # on one GPU
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, NoReturn

import torch
from common import composed, write_result
from flower_fedavg import flower_python
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from paradigms.federated.paradigm import PARTITION_SEED
from paradigms.models.backbone import create_model
from paradigms.runner.intervals import interval

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
CORE_VENV = BENCH / "runs" / "core-venv"  # this project as ``make run`` installs it
MODEL, IMG, CLIENTS, FRACTION, BATCH, LR, ROUNDS = (
    "mobilenetv3_small_050",
    32,
    20,
    0.5,
    32,
    0.05,
    10,
)
RUNNER = [
    "paradigm=federated",
    f"backbone={MODEL}",
    f"backbone.img_size={IMG}",
    "paradigm/partition=dirichlet",
    "paradigm.partition.alpha=0.5",
    f"paradigm.num_clients={CLIENTS}",
    f"paradigm.fraction={FRACTION}",
    f"paradigm.batch_size={BATCH}",
    f"paradigm.optimizer.lr={LR}",
    "paradigm.optimizer.momentum=0",
    f"paradigm.rounds={ROUNDS}",
    "paradigm.progress=false",
    "paradigm.top_k=1",
]
VARIANTS = {  # name -> runner overrides, or None for the scripts
    "flower_1_actor": None,
    "flower_2_actors": None,
    "flower_4_actors": None,  # with --device cuda: four actors on a quarter of the GPU each
    "flower_2_actors_channels_last": None,
    "bare_torch": None,
    "bare_torch_channels_last": None,
    "runner_loop_standard_layout": [
        "trainer=cpu",
        "paradigm.engine=loop",
        "callbacks.accelerate.channels_last=false",
    ],
    "runner_loop": ["trainer=cpu", "paradigm.engine=loop"],
    "runner_loop_2_processes": ["trainer=ddp_cpu", "paradigm.engine=loop"],
    "runner_loop_2_forked": ["trainer=ddp_cpu", "trainer.strategy=ddp_fork"],
    "runner_vmap": ["trainer=cpu", "paradigm.engine=vmap"],
}
IMPORT_FLOORS = {  # name -> what a process imports, then it leaves without Python's teardown
    "imports_torch_timm": "torch, timm",  # timm imports torchvision and, through it, torch._dynamo
    "imports_fabric": "torch, timm, lightning_fabric",  # what any Fabric run of a timm model needs
    "imports_runner": "torch, timm, lightning_fabric, pytorch_lightning, hydra, sklearn.datasets, "
    "sklearn.model_selection",  # the libraries the runner's federated run imports
}
VARIANTS.update(dict.fromkeys(IMPORT_FLOORS))
DEFAULTS = {  # --only's default per --device
    "cpu": [name for name in VARIANTS if name != "flower_4_actors"],
    "cuda": ["flower_1_actor", "flower_2_actors", "flower_4_actors", "bare_torch", "runner_loop",
             "runner_vmap"],
}  # fmt: skip


def partitioned(seed: int) -> tuple[dict[str, Any], Any, list[torch.Tensor]]:
    """The task's config, its datamodule (set up) and the runner's clients for ``seed``: the
    partition stream the runner draws them from."""
    config = composed([*RUNNER, f"seed={seed}"])
    data = instantiate(config["data"])
    data.setup("fit")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + PARTITION_SEED)
    labels = data.splits["train"].tensors[1]
    return config, data, instantiate(config["paradigm"]["partition"])(labels, CLIENTS, generator)


def write_task(seed: int, path: Path) -> None:
    """The runner's clients and initial weights for ``seed``, for Flower and the bare loop."""
    config, data, clients = partitioned(seed)
    x, y = data.splits["train"].tensors
    torch.manual_seed(seed)  # as the runner's seed_everything before it makes the model
    model = create_model(config["backbone"], data.num_classes)
    kwargs = {"num_classes": data.num_classes, "in_chans": config["backbone"]["in_chans"]}
    x_test, y_test = data.splits["test"].tensors
    task = {"x_train": x, "y_train": y, "x_test": x_test, "y_test": y_test, "clients": clients,
            "model": MODEL, "model_kwargs": kwargs, "init_state": model.state_dict(),
            "rounds": ROUNDS, "fraction": FRACTION, "batch_size": BATCH, "lr": LR,
            "momentum": 0.0, "seed": seed}  # fmt: skip
    torch.save(task, path)


def script(python: Path, name: str, task: Path, epochs: int, *extra: str) -> dict[str, float]:
    """One run of ``flower_fedavg.py`` or ``bare_fedavg.py``: its JSON line and whole time."""
    command = [str(python), str(BENCH / name), "--task", str(task), "--epochs", str(epochs)]
    started = time.perf_counter()
    done = subprocess.run([*command, *extra], cwd=ROOT, capture_output=True, text=True)
    whole = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return {"whole_s": whole, "acc": record["acc"], "rounds_s": record["rounds_s"],
            "import_s": record["import_s"]}  # fmt: skip


def imports(modules: str) -> dict[str, float]:
    """One process that imports ``modules`` and leaves at once (``os._exit``: no teardown, as
    the runner leaves): the start-up no run of that stack can go below."""
    started = time.perf_counter()
    command = [sys.executable, "-c", f"import os, {modules}; os._exit(0)"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"import floor failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return {"whole_s": time.perf_counter() - started}


def runner_overrides(name: str, device: str) -> list[str]:
    """The variant's overrides; on the GPU the one-process variants train on it."""
    overrides = VARIANTS[name]
    return overrides if device == "cpu" else ["trainer=gpu" if o == "trainer=cpu" else o
                                               for o in overrides]  # fmt: skip


def runner(overrides: list[str], epochs: int, seed: int) -> dict[str, float]:
    """One ``python cli.py`` run and where its seconds went, split at the run's own clock:
    ``summary.json`` is written the moment the paradigm returns, ``wall_time_s`` after its
    start."""
    with TemporaryDirectory() as out:
        command = [sys.executable, "cli.py", f"paths.output_root={out}", *RUNNER, *overrides,
                   f"paradigm.local_epochs={epochs}", f"seed={seed}"]  # fmt: skip
        launched = time.time()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        ended = time.time()
        if done.returncode != 0:
            raise SystemExit(f"runner failed: {' '.join(command)}\n{done.stderr[-3000:]}")
        run_dir = next(Path(out).glob("federated/*/*/summary.json")).parent
        rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
        summary = json.loads((run_dir / "summary.json").read_text())
        returned = (run_dir / "summary.json").stat().st_mtime
    rounds = sum(float(r["time/round_s"]) for r in rows)
    evaluation = sum(float(r["time/eval_s"]) for r in rows)
    return {"whole_s": ended - launched, "acc": summary["metrics"]["test/acc"],
            "startup_s": returned - summary["wall_time_s"] - launched,
            "train_s": rounds - evaluation, "eval_s": evaluation, "rounds_s": rounds,
            "setup_report_s": summary["wall_time_s"] - rounds,
            "summary_exit_s": ended - returned}  # fmt: skip


def rerun_in_core_venv(argv: list[str]) -> NoReturn:
    """This bench again, with ``argv`` less ``--core``, from ``CORE_VENV``'s python (installed
    by ``make install``, as ``make run`` installs the core: again when pyproject.toml changed),
    and Flower's venv made from it unless ``--venv`` names one."""
    install = ["make", "-C", str(ROOT), "--quiet", "install", f"VENV={CORE_VENV}"]
    if subprocess.run(install).returncode != 0:
        raise SystemExit(f"the core venv could not be made: {' '.join(install)} failed")
    rest = [arg for arg in argv if arg != "--core"]
    if not any(arg == "--venv" or arg.startswith("--venv=") for arg in rest):
        rest += ["--venv", str(BENCH / "runs" / "flower-core-venv")]
    python = CORE_VENV / "bin" / "python"
    raise SystemExit(subprocess.run([str(python), __file__, *rest]).returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--only", help="comma-separated variants (default: the device's)")
    parser.add_argument("--venv", type=Path, default=BENCH / "runs" / "flower-venv")
    parser.add_argument("--core", action="store_true", help="every side without the extras")
    parser.add_argument("--device", choices=list(DEFAULTS), default="cpu", help="cuda: one GPU")
    args = parser.parse_args()
    if args.core:
        rerun_in_core_venv(sys.argv[1:])
    chosen = args.only.split(",") if args.only else DEFAULTS[args.device]
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        parser.error(f"--only: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device here; use --device cpu")
        several = [n for n in chosen if "trainer=ddp_cpu" in (VARIANTS[n] or [])]
        if several:
            parser.error(f"--only: {several} run 2 CPU processes; with --device cuda choose "
                         f"among {DEFAULTS['cuda']}")  # fmt: skip
    flower = flower_python(args.venv) if any(v.startswith("flower") for v in chosen) else None
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            task = Path(tmp) / f"task-{repeat}.pt"
            write_task(repeat, task)
            for epochs in args.epochs:
                for name in chosen:
                    extra = ["--device", args.device]
                    if name.endswith("channels_last"):
                        extra.append("--channels-last")
                    if name.startswith("flower"):
                        extra += ["--actors", name.split("_")[1]]
                        record = script(flower, "flower_fedavg.py", task, epochs, *extra)
                    elif name.startswith("bare_torch"):
                        record = script(
                            Path(sys.executable), "bare_fedavg.py", task, epochs, *extra
                        )
                    elif name in IMPORT_FLOORS:
                        record = imports(IMPORT_FLOORS[name])
                    else:
                        record = runner(runner_overrides(name, args.device), epochs, repeat)
                    runs.setdefault((name, epochs), []).append(record)
                    print(f"repeat {repeat} E={epochs} {name}: {record}", flush=True)
    report(runs, args)


def medians_and_best_flower(
    runs: dict[tuple[str, int], list[dict[str, float]]], epochs: int, key: str
) -> tuple[dict[str, float], float | None]:
    """Each variant's median ``key`` at ``epochs``, and the least of Flower's as a user runs
    it (not with channels-last weights by hand); None without Flower."""
    medians = {
        name: statistics.median(r[key] for r in rs)
        for (name, e), rs in runs.items()
        if e == epochs and key in rs[0]
    }
    flowers = [
        s
        for name, s in medians.items()
        if name.startswith("flower") and not name.endswith("channels_last")
    ]
    return medians, min(flowers) if flowers else None


def report(runs: dict[tuple[str, int], list[dict[str, float]]], args: argparse.Namespace) -> None:
    """The table (medians, accuracy intervals, ratios to Flower's best setting as a user runs
    it, and to Flower with channels-last weights by hand; the rounds alone, as rounds a
    second, against Flower's best) and the JSON record."""
    table = Table(
        title=f"FedAvg, digits, {CLIENTS} clients (Dirichlet 0.5), fraction {FRACTION}, {MODEL} "
        f"{IMG}px, {ROUNDS} rounds, on {args.device}; whole process, median of {args.repeats} "
        "(seeds 0..)",
        title_justify="left",
    )
    columns = ["variant", "E", "whole s", "test acc (95% CI)", "acc - Flower, points (paired)",
               "vs best Flower", "vs Flower cl", "rounds/s", "rounds/s vs best Flower",
               "start-up s", "set-up+report s", "train s", "eval s", "summary+exit s",
               "at floor vs best Flower"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    record: dict[str, dict] = {}
    for epochs in args.epochs:
        medians, best_flower = medians_and_best_flower(runs, epochs, "whole_s")
        by_hand = medians.get("flower_2_actors_channels_last")
        rounds_s, best_flower_rounds = medians_and_best_flower(runs, epochs, "rounds_s")
        floor = medians.get("imports_fabric")
        for (name, e), rs in runs.items():
            if e != epochs:
                continue
            if name in IMPORT_FLOORS:
                table.add_row(
                    name, str(epochs), f"{medians[name]:.2f}", *["-"] * (len(columns) - 3)
                )
                record[f"{name} E={epochs}"] = {"whole_s": round(medians[name], 3), "runs": rs}
                continue
            acc = interval([r["acc"] for r in rs])
            flower = runs.get(("flower_2_actors", epochs))
            paired = None  # against Flower with 2 actors, seed by seed
            if flower is not None and name != "flower_2_actors" and len(flower) == len(rs) > 1:
                paired = interval(
                    [100 * (r["acc"] - f["acc"]) for r, f in zip(rs, flower, strict=True)]
                )
            ratio = best_flower / medians[name] if best_flower else None
            ratio_cl = by_hand / medians[name] if by_hand else None
            rounds_ratio = best_flower_rounds / rounds_s[name] if best_flower_rounds else None
            keys = ("startup_s", "setup_report_s", "train_s", "eval_s", "summary_exit_s")
            if "import_s" in rs[0]:  # Flower and the bare loop: imports, then the rounds
                keys = ("import_s", None, "rounds_s", None, None)
            parts = [statistics.median(r[k] for r in rs) if k else None for k in keys]
            at_floor = None  # Fabric's imports, then this variant's rounds: nothing else
            if floor is not None and best_flower and name.startswith("runner"):
                at_floor = best_flower / (floor + rounds_s[name])
            table.add_row(
                name, str(epochs), f"{medians[name]:.1f}",
                f"{acc.mean:.3f} [{acc.low:.3f}, {acc.high:.3f}]",
                "-" if paired is None
                else f"{paired.mean:+.1f} [{paired.low:+.1f}, {paired.high:+.1f}]",
                "-" if ratio is None else f"{ratio:.2f}x",
                "-" if ratio_cl is None else f"{ratio_cl:.2f}x",
                f"{ROUNDS / rounds_s[name]:.2f}",
                "-" if rounds_ratio is None else f"{rounds_ratio:.2f}x",
                *("-" if p is None else f"{p:.1f}" for p in parts),
                "-" if at_floor is None else f"{at_floor:.2f}x",
            )  # fmt: skip
            record[f"{name} E={epochs}"] = {
                "whole_s": round(medians[name], 2),
                "acc_mean": acc.mean,
                "acc_ci": [acc.low, acc.high],
                "acc_minus_flower_points": None
                if paired is None
                else [paired.mean, paired.low, paired.high],
                "vs_best_flower": None if ratio is None else round(ratio, 3),
                "vs_flower_channels_last": None if ratio_cl is None else round(ratio_cl, 3),
                "rounds_per_s": round(ROUNDS / rounds_s[name], 3),
                "rounds_vs_best_flower": None if rounds_ratio is None else round(rounds_ratio, 3),
                "at_import_floor_vs_best_flower": None if at_floor is None else round(at_floor, 3),
                "runs": rs,
            }
    Console(width=200).print(table)
    print(
        "Flower and the bare loop: start-up is their imports, training their whole rounds; "
        "Flower's rounds include starting Ray and its actors, the runner's its evaluations; "
        "imports_*: a process that imports those libraries and leaves (no teardown); at floor: "
        "the runner's training and evaluation after imports_fabric's seconds, nothing else"
    )
    write_result(
        "federated_speed", {"device": args.device, "repeats": args.repeats, "variants": record}
    )


if __name__ == "__main__":
    main()
