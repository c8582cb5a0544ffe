"""Federated strategies: how client updates become the next global model.

``Strategy`` is FedAvg (McMahan et al. 2017): the sample-weighted mean of the client deltas,
applied with a server learning rate. Each variant overrides one hook:

- ``correction`` (client side, added to every local gradient): FedProx (Li et al. 2020,
  proximal term mu * (w - w_global)) and SCAFFOLD (Karimireddy et al. 2020, c - c_i).
- ``server_step`` (how the combined update moves the global model): FedAvgM (Hsu et al. 2019,
  server momentum) and FedAdam / FedYogi / FedAdagrad (Reddi et al. 2021, "Adaptive
  federated optimization", through the ``second_moment`` hook of ``FedOpt``).
- ``combine`` (the robust ones, unweighted by definition): coordinate-wise median and
  trimmed mean (Yin et al. 2018), Krum / multi-Krum (Blanchard et al. 2017).
- ``combine_buffers`` (the clients' BatchNorm statistics, which are not deltas): FedAvg's
  weighted mean; the robust strategies apply their own rule, so a client reporting absurd
  statistics (or sample counts) moves them no more than it moves the parameters.

Vectors are flat (all parameters of the model in one tensor). Server state is a dict of
tensors passed in and returned, so it can be checkpointed and restored as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from paradigms.runner.errors import ConfigError

State = dict[str, torch.Tensor]


@dataclass
class Updates:
    """What the clients of one round sent back (only those accepted)."""

    deltas: torch.Tensor  # [K, P]: local weights minus the global weights
    weights: torch.Tensor  # [K]: the clients' sample counts
    variate_deltas: torch.Tensor | None = None  # [K, P]: SCAFFOLD's c_i+ - c_i
    num_clients: int = 1  # all clients of the federation (SCAFFOLD scales by |S| / N)


class Strategy:
    """FedAvg: global += server_lr * sum_k n_k delta_k / sum_k n_k."""

    uses_variates = False
    sum_based = True  # combine is a weighted mean: the sum of the updates is all it needs

    def __init__(self, server_lr: float = 1.0) -> None:
        self.server_lr = server_lr

    def check(self, clients_per_round: int) -> None:
        """Raises ConfigError when the strategy cannot work with this many clients a round."""

    def init_state(self, weights: torch.Tensor) -> State:
        """Server state before round 0 (optimizer moments, control variates)."""
        return {}

    def correction(
        self, weights: torch.Tensor, global_weights: torch.Tensor, variate: torch.Tensor | None
    ) -> torch.Tensor | None:
        """A term added to each local gradient; ``variate`` is SCAFFOLD's c - c_i."""
        return None

    def combine(self, deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The round's update from the clients' deltas."""
        w = weights.to(deltas.dtype)
        return (w / w.sum()) @ deltas

    def combine_buffers(self, buffers: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The next global buffers (``[K, B]``: each client's BatchNorm statistics)."""
        return Strategy.combine(self, buffers, weights)

    def server_step(
        self, weights: torch.Tensor, update: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """The next global weights and server state."""
        return weights + self.server_lr * update, state

    def aggregate(
        self, weights: torch.Tensor, updates: Updates, state: State
    ) -> tuple[torch.Tensor, State]:
        """One server round: combine the updates, then step the global model."""
        return self.server_step(weights, self.combine(updates.deltas, updates.weights), state)


class FedAvg(Strategy):
    """The base strategy as it is, under its name."""


class FedProx(Strategy):
    """FedAvg whose clients minimise loss + mu/2 ||w - w_global||^2."""

    def __init__(self, mu: float = 0.01, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        self.mu = mu

    def correction(self, weights, global_weights, variate):
        return self.mu * (weights - global_weights)


class Scaffold(Strategy):
    """SCAFFOLD: local gradients corrected by c - c_i; c_i kept per client across rounds
    (option II update), c moved by |S|/N times the mean change of the c_i.

    Option II reads the clients' mean gradient off their displacement, ``(x - y_i) / (K lr)``,
    which holds for plain SGD. Heavy-ball momentum ``b`` (PyTorch's SGD, reset each round)
    moves the weights by ``lr sum_j g_j (1 - b^(K-j+1)) / (1 - b)`` after K steps, about
    ``1 / (1 - b)`` times more; dividing by ``effective_steps`` instead of K gives back the
    gradient exactly when it is constant (and a mean weighting early steps slightly more when
    not). Other optimizers (Nesterov, Adam...) are refused by the schema."""

    uses_variates = True

    def init_state(self, weights):
        return {"c": torch.zeros_like(weights)}

    def correction(self, weights, global_weights, variate):
        return variate

    @staticmethod
    def effective_steps(steps: int, momentum: float) -> float:
        """The plain-SGD steps that ``steps`` heavy-ball steps equal along a constant gradient:
        sum_{m=1..K} (1 - b^m) / (1 - b) = (K - b (1 - b^K) / (1 - b)) / (1 - b)."""
        if momentum == 0:
            return float(steps)
        b = momentum
        return (steps - b * (1 - b**steps) / (1 - b)) / (1 - b)

    def variate_change(
        self, delta: torch.Tensor, c: torch.Tensor, steps: int, lr: float, momentum: float
    ) -> torch.Tensor:
        """Option II's c_i+ - c_i = -c + (x - y_i) / (K lr), K the effective steps (``delta`` is
        y_i - x)."""
        return -c - delta / (self.effective_steps(steps, momentum) * lr)

    def aggregate(self, weights, updates, state):
        weights, state = super().aggregate(weights, updates, state)
        assert updates.variate_deltas is not None
        step = updates.variate_deltas.sum(0) / updates.num_clients
        return weights, {**state, "c": state["c"] + step}


class FedAvgM(Strategy):
    """Server momentum: v = beta v + update; global += server_lr * v."""

    def __init__(self, momentum: float = 0.9, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        self.momentum = momentum

    def init_state(self, weights):
        return {"v": torch.zeros_like(weights)}

    def server_step(self, weights, update, state):
        v = self.momentum * state["v"] + update
        return weights + self.server_lr * v, {"v": v}


class FedOpt(Strategy):
    """Reddi et al.'s adaptive server: m = b1 m + (1-b1) d; v = second_moment(v, d^2);
    global += server_lr * m / (sqrt(v) + tau). ``second_moment`` is FedAdam's."""

    def __init__(
        self, server_lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3
    ) -> None:
        super().__init__(server_lr)
        self.beta1, self.beta2, self.tau = beta1, beta2, tau

    def init_state(self, weights):
        return {"m": torch.zeros_like(weights), "v": torch.full_like(weights, self.tau**2)}

    def second_moment(self, v: torch.Tensor, squared: torch.Tensor) -> torch.Tensor:
        return self.beta2 * v + (1 - self.beta2) * squared

    def server_step(self, weights, update, state):
        m = self.beta1 * state["m"] + (1 - self.beta1) * update
        v = self.second_moment(state["v"], update * update)
        return weights + self.server_lr * m / (v.sqrt() + self.tau), {"m": m, "v": v}


class FedAdam(FedOpt):
    """FedOpt with Adam's second moment."""


class FedYogi(FedOpt):
    """FedOpt with Yogi's sign-controlled second moment."""

    def second_moment(self, v, squared):
        return v - (1 - self.beta2) * squared * torch.sign(v - squared)


class FedAdagrad(FedOpt):
    """FedOpt with Adagrad's accumulated second moment."""

    def second_moment(self, v, squared):
        return v + squared


class Robust(Strategy):
    """A strategy whose rule needs every update and ignores the reported sample counts; the
    clients' buffers go through the same rule as their deltas."""

    sum_based = False

    def combine_buffers(self, buffers, weights):
        return self.combine(buffers, weights)


class Median(Robust):
    """Coordinate-wise median of the deltas (the mean of the two middle values when even)."""

    def combine(self, deltas, weights):
        ordered = deltas.sort(dim=0).values
        k = len(deltas)
        return (ordered[(k - 1) // 2] + ordered[k // 2]) / 2


class TrimmedMean(Robust):
    """Coordinate-wise mean after dropping the ``floor(beta * K)`` largest and smallest."""

    def __init__(self, beta: float = 0.1, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        self.beta = beta

    def combine(self, deltas, weights):
        cut = int(self.beta * len(deltas))
        return deltas.sort(dim=0).values[cut : len(deltas) - cut].mean(0)


class Krum(Robust):
    """(Multi-)Krum: score each delta by the summed squared distance to its K - f - 2 nearest
    others; average the ``num_selected`` lowest-scored (1: Krum). When dropouts leave fewer
    than f + 3 deltas, the score uses the nearest one (Flower's max(1, K - f - 2)): still a
    selection, never a plain mean, though Krum's guarantee needs K > 2f + 2."""

    def __init__(self, byzantine: int = 1, num_selected: int = 1, server_lr: float = 1.0):
        super().__init__(server_lr)
        self.byzantine = byzantine
        self.num_selected = num_selected

    def check(self, clients_per_round):
        if clients_per_round < 2 * self.byzantine + 3:
            raise ConfigError(
                "paradigm.strategy.byzantine",
                self.byzantine,
                f"Krum needs more than 2f + 2 clients a round, got {clients_per_round}",
                "sample more clients (paradigm.fraction) or lower byzantine",
            )

    def scores(self, deltas: torch.Tensor) -> torch.Tensor:
        distances = torch.cdist(deltas, deltas).square()
        nearest = max(1, len(deltas) - self.byzantine - 2)
        # Column 0 of the sorted row is the distance to itself (zero).
        return distances.sort(dim=1).values[:, 1 : nearest + 1].sum(1)

    def combine(self, deltas, weights):
        chosen = self.scores(deltas).argsort(stable=True)[: self.num_selected]
        return deltas[chosen].mean(0)
