"""Federated learning simulation: server loop, client training, strategies (see paradigm.py)."""

from paradigms.federated.paradigm import Federated

__all__ = ["Federated"]
