"""Flower's side of the FedAvg speed benchmark: the harness's task run by Flower 1.42's engine.

Two roles. Imported (standard library only), :func:`flower_python` makes a virtualenv with
``flwr[simulation]==1.42.0`` that borrows torch, timm and numpy from the project's venv, and
returns its python. Run with that python, the script runs the task in TASK.pt as a Flower user
would: a ServerApp driving Flower's FedAvg strategy with centralized evaluation, a ClientApp
on each of the task's clients (virtual SuperNodes), ``flwr.simulation.run_simulation`` with the
Ray backend and ``--actors`` actors on the machine's cores. It prints one JSON line on stdout,
``{"acc": final test accuracy, "rounds_s": seconds of the simulation, "import_s": seconds
importing torch, timm and flwr}``; Flower's and Ray's output goes to stderr.

    <venv>/bin/python bench/flower_fedavg.py --task TASK.pt --epochs E [--actors K] [--channels-last]
        [--device cuda]

``--channels-last`` lays the model's weights out channels-last (in the driver and every actor):
the layout the runner picks on a CPU for this model, applied by hand as a Flower user could.
``--device cuda`` trains and evaluates on the GPU, which the actors share as Flower's guide
sets it up: each actor asks Ray for 1/K of it (``num_gpus``), so K clients train at once.

TASK.pt is a ``torch.save``'d dict: x_train, x_test (float32 [N, C, H, W]), y_train, y_test
(int64 [N]); clients (a LongTensor of train indices per client); model, model_kwargs and
init_state (``timm.create_model(model, **model_kwargs)`` and the weights every side starts
from); rounds, fraction (of the clients sampled per round), batch_size, lr, momentum, seed.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from torch import nn

FLOWER_VERSION = "1.42.0"
# Already in the project's venv, which the Flower venv sees: pip must keep them, not fetch
# others (a fresh torch is gigabytes).
KEPT = ("torch", "numpy")
# What the timed import covers: everything this script takes from torch, timm and Flower.
IMPORTS = ("torch", "timm", "flwr.app", "flwr.clientapp", "flwr.serverapp", "flwr.simulation")


def flower_python(venv: Path) -> Path:
    """The python of a virtualenv at ``venv`` holding ``flwr[simulation]==1.42.0``.

    Made on the first call (later ones find Flower there and return at once): a venv of this
    interpreter (the project's), whose site-packages gets a ``.pth`` line naming the project
    venv's, so torch, timm and numpy are shared; then pip installs Flower and Ray, constrained
    to the torch and numpy already there. Stops (SystemExit) with one line if that fails.
    """
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import flwr; assert flwr.__version__ == {FLOWER_VERSION!r}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    _run_or_exit([sys.executable, "-m", "venv", str(venv)], venv)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(_run_or_exit([str(python), "-c", where], venv).strip())
    (site / "project_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    constraints = venv / "constraints.txt"
    constraints.write_text("".join(f"{name}=={metadata.version(name)}\n" for name in KEPT))
    requirement = f"flwr[simulation]=={FLOWER_VERSION}"
    _run_or_exit([str(python), "-m", "pip", "install", "-c", str(constraints), requirement], venv)
    return python


def _run_or_exit(command: list[str], venv: Path) -> str:
    """Runs one step of making the Flower venv; its stdout, or SystemExit with its last error."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()]
        errors = [line for line in lines if line.startswith("ERROR")] or [x for x in lines if x]
        reason = errors[-1] if errors else f"exit status {done.returncode}"
        raise SystemExit(f"Flower could not be installed into {venv}: {reason}")
    return done.stdout


@functools.cache
def _task(
    path: str, channels_last: bool = False, device: str = "cpu"
) -> tuple[dict[str, Any], nn.Module]:
    """The task and a model for it on ``device``, loaded once per process (the driver, each
    Ray actor), with channels-last weights if asked (``load_state_dict`` keeps their layout).
    The data goes to the device once here, not with every client."""
    import timm
    import torch

    task = torch.load(path, map_location=device)
    model = timm.create_model(task["model"], **task["model_kwargs"]).to(device)
    model.load_state_dict(task["init_state"])
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return task, model


def _train(message: Message, context: Context) -> Message:
    """The ClientApp's train: the global weights, ``epochs`` epochs of SGD on this client's
    examples, and the whole state_dict back, weighted by the number of examples."""
    import torch
    import torch.nn.functional as F
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    config = message.content["config"]
    device = str(config["device"])
    task, model = _task(str(config["task"]), bool(config["channels-last"]), device)
    client = int(context.node_config["partition-id"])
    torch.set_num_threads(int(config["threads"]))
    torch.manual_seed(task["seed"] * 1_000_003 + int(config["server-round"]) * 1_009 + client)
    model.load_state_dict(message.content["arrays"].to_torch_state_dict())
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=task["lr"], momentum=task["momentum"])
    index = task["clients"][client]
    x, y = task["x_train"][index], task["y_train"][index]
    for _ in range(int(config["epochs"])):
        for batch in torch.randperm(len(y), device=device).split(task["batch_size"]):
            if len(batch) < 2:  # BatchNorm cannot train on one example
                continue
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    metrics = MetricRecord({"num-examples": len(y)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, required=True, help="the harness's TASK.pt")
    parser.add_argument("--epochs", type=int, required=True, help="local epochs per round")
    parser.add_argument("--actors", type=int, default=1, help="Ray actors training at once")
    parser.add_argument("--channels-last", action="store_true", help="channels-last weights")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: one GPU")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    if not 1 <= args.actors <= cpus:
        parser.error(f"--actors must be between 1 and the {cpus} cores")
    gpus = 1.0 if args.device == "cuda" else 0.0  # one GPU, shared by the actors
    # The result line alone on stdout: Flower and Ray (and the actors' output, which Ray
    # relays to the driver's stdout) write to stderr.
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"  # no reports to flower.ai from a benchmark

    started = time.perf_counter()
    for name in IMPORTS:
        importlib.import_module(name)
    import_s = time.perf_counter() - started

    import torch
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
    from flwr.simulation import run_simulation

    task_path = str(args.task.resolve())
    task, model = _task(task_path, args.channels_last, args.device)
    num_clients = len(task["clients"])
    per_round = round(task["fraction"] * num_clients)
    threads = cpus // args.actors
    replies: list[int] = []
    final: dict[str, float] = {}

    def count_replies(records: list[RecordDict], weight_key: str) -> MetricRecord:
        """FedAvg's default train-metrics aggregation, counting the clients that replied
        (Flower turns a ClientApp's exception into a missing reply, not an error)."""
        replies.append(len(records))
        return aggregate_metricrecords(records, weight_key)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Centralized evaluation on the test set. FedAvg calls it before the first round
        and after every round; only the last round's is computed."""
        if server_round < task["rounds"]:
            return None
        model.load_state_dict(arrays.to_torch_state_dict())
        model.eval()
        with torch.inference_mode():
            hits = model(task["x_test"]).argmax(1) == task["y_test"]
        final["acc"] = hits.float().mean().item()
        return MetricRecord({"acc": final["acc"]})

    client_app = ClientApp()
    client_app.train()(_train)
    server_app = ServerApp()

    @server_app.main()
    def server(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_train=task["fraction"],
            fraction_evaluate=0.0,  # no client-side evaluation
            min_train_nodes=per_round,
            min_available_nodes=num_clients,
            train_metrics_aggr_fn=count_replies,
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(task["init_state"]),
            num_rounds=task["rounds"],
            train_config=ConfigRecord(
                {
                    "task": task_path,
                    "epochs": args.epochs,
                    "threads": threads,
                    "channels-last": args.channels_last,
                    "device": args.device,
                }  # fmt: skip
            ),
            evaluate_fn=evaluate,
        )

    started = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=num_clients,
        backend_config={
            "client_resources": {"num_cpus": threads, "num_gpus": gpus / args.actors},
            "init_args": {"num_cpus": args.actors * threads, "num_gpus": gpus},  # K actors
        },
    )
    rounds_s = time.perf_counter() - started
    if replies != [per_round] * task["rounds"] or "acc" not in final:
        raise SystemExit(f"Flower's run fell short: clients replying per round {replies}")
    line = {"acc": final["acc"], "rounds_s": round(rounds_s, 3), "import_s": round(import_s, 3)}
    print(json.dumps(line), file=result_out, flush=True)


if __name__ == "__main__":
    # Run under its module name, not __main__, so Ray's actors (Flower puts this sys.path on
    # theirs) import _train by reference and keep _task's cache, as for a Flower app package.
    import flower_fedavg

    flower_fedavg.main()
