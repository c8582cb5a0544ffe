"""Federated learning, simulated: the paradigm (``paradigm.py``) splits the data over clients
(``partition.py``: partitioners), runs the server loop (``server.py``) over client training
(``client.py``) and aggregates by a strategy (``strategies.py``); attacks, client-level DP and
secure aggregation plug into the update path (``attacks.py``, ``privacy.py``, ``secure.py``);
``report.py`` writes the rounds. Strategies, partitioners, attacks and privacy are chosen by
config groups (``paradigm/<group>``); their settings are in ``schema.py``."""
