"""paradigms: one package per training paradigm beside two shared packages.

``runner/`` is what a run does around a paradigm, ``models/`` the model pieces paradigms
share, and ``contract.py`` what every paradigm honours. A paradigm package holds its paradigm
(``paradigm.py``), the schema of its settings (``schema.py``) and its pieces; it imports
``runner/``, ``models/`` and ``contract``, never another paradigm. Package ``__init__``s stay
empty so that a schema loads without torch. See docs/architecture.md.
"""
