"""paradigms: one package per training paradigm beside two shared packages.

``runner/`` is what a run does around a paradigm, ``models/`` the model pieces paradigms
share, and ``contract.py`` what every paradigm honours. A paradigm imports ``runner/``,
``models/`` and ``contract``, never another paradigm. See docs/architecture.md.
"""
