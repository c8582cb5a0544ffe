"""Multi-task learning: a shared timm backbone and one head per task (``model.py``, tasks in
``tasks.py``), trained by ``module.py`` with the task losses combined by a weighting
(``weighting.py``: one class each, chosen by ``paradigm/weighting``). The paradigm is in
``paradigm.py``; its settings, the tasks' and each weighting's in ``schema.py``."""
