"""paradigms: transfer learning, fine-tuning, multi-task, federated learning and distillation
from one command. ``python cli.py --help`` lists the config groups; see README.md.

Only this file sees the whole config. Heavy libraries (torch, Lightning, timm) are imported
after validation, so ``--help``, ``--cfg job`` and a bad value answer at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from paradigms.runner.choices import check_choices
from paradigms.runner.console import quiet
from paradigms.runner.errors import ConfigError, reported
from paradigms.runner.help import register_resolver as register_help_resolver
from paradigms.runner.preflight import preflight
from paradigms.runner.process_exit import exit_without_teardown
from paradigms.runner.run_dirs import (
    chosen_checkpoint,
    is_new_run,
    register_resolvers,
    resumed_config,
    resumes_saved_run,
)
from paradigms.runner.seeds import expand_seeds
from paradigms.runner.slurm import register_resolvers as register_slurm_resolvers
from paradigms.runner.sweep import multirun_strategy
from paradigms.runner.threads import machine, use_cores

register_resolvers()
register_slurm_resolvers()
register_help_resolver()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    fresh = is_new_run(cfg.resume, run_dir)
    quiet(cfg.verbose)  # library log lines and warnings: cli.log only, unless verbose=true
    with reported(run_dir, fresh, cfg.debug, multirun):
        if resumes_saved_run(cfg.resume):
            cfg = resumed_config(
                cfg, list(hydra_cfg.overrides.task), set(hydra_cfg.runtime.choices)
            )
        checked = preflight(cfg)  # validates before torch loads; one line per problem
        threads = use_cores(
            OmegaConf.select(cfg, "threads", default="auto"),  # runs saved before it: auto
            OmegaConf.to_container(hydra_cfg.launcher, resolve=True) if multirun else {},
            OmegaConf.to_container(cfg.trainer, resolve=True),
            OmegaConf.select(cfg, "data.loader.num_workers", default=0) or 0,
        )

        import pytorch_lightning as pl

        from paradigms.contract import Context
        from paradigms.runner.plots import describe, plot_run
        from paradigms.runner.stages import Stages
        from paradigms.runner.summary import SUMMARY, print_summary, write_summary
        from paradigms.runner.tracking import log_summary

        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        plain, paradigm = checked.config, checked.paradigm
        context = Context(
            run_dir=run_dir,
            seed=cfg.seed,
            backbone=plain["backbone"],
            data=plain["data"],
            source=plain.get("source"),
            stages=Stages(
                multirun_strategy(plain["trainer"], multirun),
                plain["callbacks"],
                plain["logger"],
                cfg.seed,
                bool(cfg.resume),
                run_dir=run_dir,
                resume_from=chosen_checkpoint(cfg.resume),
                hparams=plain,
                nonfinite=cfg.nonfinite,
            ),
            compare=checked.compare,
            cache_dir=Path(cfg.paths.cache_dir),
        )
        started = time.perf_counter()
        result = paradigm.run(context)
        paradigm_name = hydra_cfg.runtime.choices.paradigm
        if pl.utilities.rank_zero_only.rank == 0:
            write_summary(
                result,
                run_dir,
                {
                    "paradigm": paradigm_name,
                    "optimized_metric": cfg.optimized_metric,
                    "wall_time_s": round(time.perf_counter() - started, 2),
                    "threads": threads,
                    "machine": machine(),
                },
            )
            plots = plot_run(run_dir, result.rows)
            trackers = log_summary(
                plain["logger"], run_dir, result.metrics, [run_dir / SUMMARY, *plots]
            )
            print_summary(
                result,
                f"{paradigm_name} on {hydra_cfg.runtime.choices.data}",
                run_dir,
                footer=[*describe(plots, run_dir), *trackers],
            )
        return result.metrics[cfg.optimized_metric]


if __name__ == "__main__":
    try:
        sys.argv[1:] = expand_seeds(sys.argv[1:])  # seeds=3: the run over seeds 0, 1, 2
        check_choices(sys.argv[1:], Path(__file__).parent / "conf")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()  # a failed run leaves through sys.exit, with the interpreter's usual teardown
    exit_without_teardown(0)
