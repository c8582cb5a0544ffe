"""Federated learning simulation: server loop, client training, strategies (see paradigm.py)."""
