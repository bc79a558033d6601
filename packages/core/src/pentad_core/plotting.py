"""Figures saved as PNG without a display (Agg backend), written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pentad_core.files import atomic_write_bytes


def new_figure(width: float = 6.4, height: float = 4.8):
    """A new figure and axes (``plt.subplots``) on the non-interactive backend."""
    return plt.subplots(figsize=(width, height))


def save_figure(figure, path: str | Path, dpi: int = 120) -> Path:
    """Render ``figure`` to PNG at ``path`` atomically and close it."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(curves: dict[str, list[float]], path: str | Path, xlabel: str = "epoch", ylabel: str = "") -> Path:
    """Line plot of named series (e.g. ``{"train/loss": [...], "val/loss": [...]}``)."""
    figure, axes = new_figure()
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), values, marker="o" if len(values) < 30 else None, label=name)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend()
    return save_figure(figure, path)


def read_logged_curves(metrics_csv: str | Path, keys: list[str] | None = None) -> dict[str, list[float]]:
    """Series from Lightning's CSV log (``logs/metrics.csv``): one value per row where the key is set."""
    import csv

    path = Path(metrics_csv)
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = keys or [name for name in (rows[0].keys() if rows else []) if name not in ("epoch", "step")]
    curves: dict[str, list[float]] = {}
    for name in names:
        values = [float(row[name]) for row in rows if row.get(name) not in (None, "")]
        if values:
            curves[name] = values
    return curves
