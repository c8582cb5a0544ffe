"""What a run does around a paradigm: run directories, config validation and one-line errors,
the Lightning training stages, loggers, the summary, plots and sweeps.

Shared by cli.py and every paradigm; it never imports a paradigm.
"""
