"""The model summary at the start of a run: Lightning's rich one, shorter."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import RichModelSummary
from pytorch_lightning.utilities.model_summary import get_human_readable_count
from rich import get_console
from rich.table import Table


class ModelSummary(RichModelSummary):
    """Lightning's ``RichModelSummary`` without its FLOPs column when FLOPs were not counted
    (a module without an ``example_input_array`` reports 0), and its totals on one line."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [(n, v) for n, v in summary_data if n != "FLOPs" or total_flops]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="left" if name in ("Name", "Type", "Mode") else "right")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        totals = [
            f"trainable params {get_human_readable_count(trainable_parameters)}",
            f"total {get_human_readable_count(total_parameters)}",
            f"{model_size:.1f} MB",
        ]
        if total_flops:
            totals.append(f"FLOPs {get_human_readable_count(total_flops)}")
        out = get_console()
        out.print(table)
        out.print(" · ".join(totals), highlight=False)
