"""The bare PyTorch side of the FedAvg speed benchmark: the harness's task as one writes it by
hand, in one process: per round, each sampled client loads the global weights, trains with a
fresh SGD, and the server averages the state dicts (BatchNorm statistics included) weighted by
the clients' sizes, then evaluates on the test set. It prints one JSON line,
``{"acc": final test accuracy, "rounds_s": seconds of the rounds, "import_s": seconds importing
torch and timm}``. TASK.pt is described in ``flower_fedavg.py``.

``--channels-last`` lays the model's weights out channels-last, as the runner's
``callbacks.accelerate.channels_last: auto`` does on a CPU for this model. ``--device cuda``
holds the model and the data on the GPU.

    python bench/bare_fedavg.py --task TASK.pt --epochs E [--channels-last] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, required=True, help="the harness's TASK.pt")
    parser.add_argument("--epochs", type=int, required=True, help="local epochs per round")
    parser.add_argument("--channels-last", action="store_true", help="channels-last weights")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: one GPU")
    args = parser.parse_args()
    started = time.perf_counter()
    import timm
    import torch
    import torch.nn.functional as F

    import_s = time.perf_counter() - started
    task = torch.load(args.task, weights_only=False, map_location=args.device)
    model = timm.create_model(task["model"], **task["model_kwargs"]).to(args.device)
    model.load_state_dict(task["init_state"])
    if args.channels_last:  # load_state_dict copies into these weights, keeping their layout
        model.to(memory_format=torch.channels_last)
    state = {k: v.clone() for k, v in task["init_state"].items()}
    x, y, clients = task["x_train"], task["y_train"], task["clients"]
    per_round = max(1, round(task["fraction"] * len(clients)))
    started = time.perf_counter()
    for round_ in range(task["rounds"]):
        picked = torch.randperm(len(clients), generator=torch.Generator().manual_seed(round_))
        states, sizes = [], []
        for client in sorted(picked[:per_round].tolist()):
            torch.manual_seed(task["seed"] * 100_003 + round_ * 1_009 + client)
            model.load_state_dict(state)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=task["lr"], momentum=task["momentum"])
            cx, cy = x[clients[client]], y[clients[client]]
            for _ in range(args.epochs):
                for index in torch.randperm(len(cy), device=cy.device).split(task["batch_size"]):
                    if len(index) < 2:  # BatchNorm needs two samples
                        continue
                    opt.zero_grad()
                    F.cross_entropy(model(cx[index]), cy[index]).backward()
                    opt.step()
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            sizes.append(len(cy))
        total = sum(sizes)
        for name, value in state.items():
            if value.is_floating_point():
                value.copy_(sum(s[name] * (n / total) for s, n in zip(states, sizes, strict=True)))
        model.load_state_dict(state)
        model.eval()
        with torch.inference_mode():
            acc = (model(task["x_test"]).argmax(1) == task["y_test"]).float().mean().item()
    rounds_s = time.perf_counter() - started
    print(json.dumps({"acc": acc, "rounds_s": rounds_s, "import_s": import_s}))


if __name__ == "__main__":
    main()
