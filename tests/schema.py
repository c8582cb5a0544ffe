"""Schemas of the components that tests/test_extending.py adds, found as every component's
are: the class of the same name in the ``schema`` module of the component's package."""

from __future__ import annotations

from paradigms.federated.schema import FedAvg


class Unweighted(FedAvg):
    """Its ``server_lr`` must be > 0, as FedAvg's."""
