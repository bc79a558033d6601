"""Timing and table helpers for the apps' ``benchmark`` verbs: warm-up, median of N, throughput, tables.

Importing this module loads neither torch nor Lightning, so an app can print a table without them.
The trainer parity experiment (pentad trainer against a hand-written PyTorch loop) lives in
:mod:`pentad_core.parity`; ``python -m pentad_core.bench`` still runs it, with the same options.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Seconds per call over repeated runs."""

    median: float
    minimum: float
    maximum: float
    samples: tuple[float, ...]


def time_callable(function: Callable[[], Any], *, warmup: int = 1, repeats: int = 5, sync_cuda: bool = True) -> Timing:
    """Call ``function`` ``warmup`` times untimed, then ``repeats`` times timed.

    Args:
        function: The work to time.
        warmup: Untimed calls first (caches, lazy initialisation, autotuning).
        repeats: Timed calls; the median is robust to a noisy neighbour.
        sync_cuda: Synchronise CUDA before reading the clock so queued kernels are counted.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    import torch  # here, not at the top: the table helpers need no torch

    synchronise = torch.cuda.synchronize if (sync_cuda and torch.cuda.is_available()) else (lambda: None)
    for _ in range(warmup):
        function()
    synchronise()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronise()
        samples.append(time.perf_counter() - start)
    return Timing(statistics.median(samples), min(samples), max(samples), tuple(samples))


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of ``values``.

    The interval between the k-th smallest and the k-th largest value holds the true median with
    probability ``1 - 2 P(Binomial(n, 1/2) < k)``; k is the largest with at least ``confidence``.
    With 21 values at 95 % that is the 6th to the 16th; with fewer than 6 values no pair reaches
    95 %, and the whole range is returned.

    Args:
        values: Independent measurements (for example one ratio per benchmark round).
        confidence: The wanted coverage, between 0 and 1.
    """
    if not values:
        raise ValueError("median_interval needs at least one value")
    ordered = sorted(values)
    count = len(ordered)
    tail, below = (1 - confidence) / 2, 0.0
    rank = 0  # the k of the docstring: the interval runs from the k-th smallest to the k-th largest
    while rank < count // 2:
        below += math.comb(count, rank) / 2**count  # P(Binomial(count, 1/2) == rank)
        if below > tail:
            break
        rank += 1
    if rank == 0:
        return ordered[0], ordered[-1]
    return ordered[rank - 1], ordered[count - rank]


def throughput(items: float, seconds: float) -> float:
    """Items per second (0 when no time elapsed)."""
    return items / seconds if seconds > 0 else 0.0


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A GitHub-markdown table of ``rows`` (floats rounded to ``digits`` significant places)."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def print_table(rows: Sequence[dict[str, Any]], title: str = "", columns: Sequence[str] | None = None) -> None:
    """Print ``rows`` as a rich table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    columns = list(columns or rows[0].keys())
    table = Table(title=title or None)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in (row.get(c, "") for c in columns)))
    Console().print(table)


if __name__ == "__main__":
    from pentad_core.parity import main

    raise SystemExit(main(prog="python -m pentad_core.bench"))
