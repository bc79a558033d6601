"""Learning curves from the Monitor logs of the training envs and from periodic evaluations."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pentad_core.plotting import new_figure, save_figure


def read_monitor(folder: str | Path) -> dict[str, np.ndarray]:
    """Episodes recorded by SB3's Monitor in ``folder/*.monitor.csv``, in order of completion.

    Returns:
        ``returns``, ``lengths``, ``timesteps`` (cumulative environment steps over all envs at the end of
        each episode) and ``wall_s``; empty arrays when nothing was logged.
    """
    rows = []
    for path in sorted(Path(folder).glob("*.monitor.csv")):
        with path.open(encoding="utf-8") as handle:
            handle.readline()  # the JSON header line
            rows.extend((float(r["t"]), float(r["r"]), int(r["l"])) for r in csv.DictReader(handle))
    if not rows:
        empty = np.zeros(0)
        return {"returns": empty, "lengths": empty, "timesteps": empty, "wall_s": empty}
    rows.sort()
    wall, returns, lengths = (np.array(column) for column in zip(*rows))
    return {"returns": returns, "lengths": lengths, "timesteps": np.cumsum(lengths), "wall_s": wall}


def plot_learning_curve(
    monitor_folder: str | Path, curve: list[dict[str, float]], path: str | Path, title: str = ""
) -> Path:
    """Training episode returns (raw and smoothed) and evaluation mean returns against steps."""
    episodes = read_monitor(monitor_folder)
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
