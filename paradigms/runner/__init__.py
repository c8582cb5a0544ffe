"""What a run does around a paradigm: the pre-flight checks (config-group options, schema
validation, what the paradigm needs) and their one-line errors, run directories, the
Lightning training stages, loggers and trackers, the summary, plots and sweeps.

Shared by cli.py and every paradigm; it never imports a paradigm (it builds one from config).
"""
