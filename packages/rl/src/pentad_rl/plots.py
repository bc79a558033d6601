"""Learning curves from the Monitor logs of the training envs and from periodic evaluations."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pentad_core.plotting import new_figure, save_figure


def read_monitor(folder: str | Path, n_envs: int | None = None) -> dict[str, np.ndarray]:
    """Episodes recorded by SB3's Monitor of the run's training envs, in order of completion.

    Args:
        folder: The run's ``monitor/`` folder.
        n_envs: Read ``0.monitor.csv`` ... ``<n_envs - 1>.monitor.csv`` only (the run's own envs; a file
            of another run left in the folder is not mixed in); ``None`` reads every ``*.monitor.csv``.

    Returns:
        ``returns``, ``lengths``, ``timesteps`` (cumulative environment steps over all envs at the end of
        each episode) and ``wall_s``; empty arrays when nothing was logged. A last line cut short by a
        kill is skipped.
    """
    folder = Path(folder)
    paths = (
        sorted(folder.glob("*.monitor.csv")) if n_envs is None else [folder / f"{i}.monitor.csv" for i in range(n_envs)]
    )
    rows = []
    for path in paths:
        if not path.is_file():
            continue
        with path.open(encoding="utf-8") as handle:
            handle.readline()  # the JSON header line
            for row in csv.DictReader(handle):
                try:
                    rows.append((float(row["t"]), float(row["r"]), int(row["l"])))
                except (TypeError, ValueError):
                    continue
    if not rows:
        empty = np.zeros(0)
        return {"returns": empty, "lengths": empty, "timesteps": empty, "wall_s": empty}
    rows.sort()
    wall, returns, lengths = (np.array(column) for column in zip(*rows))
    return {"returns": returns, "lengths": lengths, "timesteps": np.cumsum(lengths), "wall_s": wall}


def plot_learning_curve(
    monitor_folder: str | Path,
    curve: list[dict[str, float]],
    path: str | Path,
    title: str = "",
    n_envs: int | None = None,
) -> Path:
    """Training episode returns (raw and smoothed) of envs ``0..n_envs-1`` and evaluation mean returns against steps."""
    episodes = read_monitor(monitor_folder, n_envs)
    figure, axes = new_figure(7.0, 4.2)
    if len(episodes["returns"]):
        if len(episodes["returns"]) <= 1000:  # beyond that the raw episodes only paint a band
            axes.plot(
                episodes["timesteps"], episodes["returns"], alpha=0.25, color="tab:blue", label="training episodes"
            )
        window = max(1, len(episodes["returns"]) // 20)
        smooth = np.convolve(episodes["returns"], np.ones(window) / window, mode="valid")
        axes.plot(
            episodes["timesteps"][window - 1 :], smooth, color="tab:blue", label=f"training, mean of {window} episodes"
        )
    if curve:
        axes.plot(
            [p["timesteps"] for p in curve],
            [p["mean_return"] for p in curve],
            "o-",
            color="tab:red",
            label="evaluation (deterministic)",
        )
    axes.set_xlabel("environment steps")
    axes.set_ylabel("episode return")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return save_figure(figure, path)
