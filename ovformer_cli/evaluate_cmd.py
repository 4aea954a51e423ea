"""``ovformer evaluate``: YouTube-VIS / OVIS / LV-VIS / BURST metrics of a results file."""

from __future__ import annotations

import json
import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ovformer_cli.console import stderr, stdout, user_errors

if TYPE_CHECKING:  # the evaluator (numpy, pycocotools) and rich's tables are imported when the command runs
    from rich.table import Table

    from ovformer_core.eval import EvalResult


class BenchmarkChoice(str, Enum):
    """Which official evaluator to reproduce."""

    ytvis = "ytvis"
    ovis = "ovis"
    lvvis = "lvvis"
    burst = "burst"


def _cell(value: float) -> str:
    return "n/a" if value == -1 else f"{value:.3f}"


def metrics_table(result: EvalResult) -> Table:
    """The 12 numbers as rows; one column for all categories and one per category group."""
    from rich.table import Table

    from ovformer_core.eval import STAT_NAMES

    table = Table(
        title=f"{result.benchmark} metrics ({len(result.video_ids)} videos, {len(result.category_ids)} categories)",
        caption="n/a: no ground truth in that setting",
    )
    table.add_column("metric")
    table.add_column("all", justify="right")
    for group, categories in result.group_categories.items():
        table.add_column(f"{group} ({len(categories)})", justify="right")
    for name in STAT_NAMES:
        row = [name, _cell(result.stats[name])]
        row += [_cell(values[name]) for values in result.group_stats.values()]
        table.add_row(*row)
    return table


@user_errors
def evaluate(
    gt: Annotated[Path, typer.Option("--gt", help="Ground truth in YouTube-VIS format.", metavar="GT.json")],
    results: Annotated[
        Path,
        typer.Option(
            "--results",
            help="Results in YouTube-VIS results format, or a full result of 'ovformer segment' / 'ovformer view' "
            "(NAME.json, NAME.reviewed.json).",
            metavar="RESULTS.json",
        ),
    ],
    benchmark: Annotated[
        BenchmarkChoice,
        typer.Option("--benchmark", "-b", help="Official evaluator to reproduce (lvvis and burst add groups)."),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the metrics as JSON here.", metavar="METRICS.json")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
) -> None:
    """Compute AP/AR exactly as the official YouTube-VIS, OVIS, LV-VIS or BURST evaluator does."""
    from ovformer_core.eval import EvaluationWarning
    from ovformer_core.eval import evaluate as evaluate_metrics
    from ovformer_core.io.atomic import write_text_atomic

    with warnings.catch_warnings():
        # Shown below through the console instead of Python's warning printer.
        warnings.simplefilter("ignore", EvaluationWarning)
        result = evaluate_metrics(gt, results, benchmark.value)
    metrics = result.to_dict()
    if out is not None:
        write_text_atomic(out, json.dumps(metrics, indent=2) + "\n")
    if not quiet:
        for note in result.warnings:
            stderr.print(f"[yellow]warning:[/] {note}", markup=True, highlight=False)
    if json_output:
        typer.echo(json.dumps(metrics))
    elif not quiet:
        stdout.print(metrics_table(result))
        if out is not None:
            stdout.print(f"wrote {out}", highlight=False)
