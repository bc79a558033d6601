"""Serving export: the scoring model as ONNX, embedding tables as ``.npy`` (and Parquet), id maps as JSON.

Parquet needs pyarrow (``pip install "pentad-recsys[parquet]"``); without it the ``.npy`` files and
JSON id maps carry the same content and the export says Parquet was skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pentad_core.errors import ConfigError
from pentad_core.export import check_onnx_parity, export_onnx
from pentad_core.files import atomic_write_bytes, atomic_write_json
from pentad_recsys.recommender import Recommender


class ScoringModel(nn.Module):
    """``(users [B], items [B]) -> [B]`` predictions as served: the model plus the global mean and
    the clipping to the rating range (rating task)."""

    def __init__(self, recommender: Recommender) -> None:
        super().__init__()
        self.model = recommender.model.serving_module()
        self.offset = (
            0.0 if recommender.model.absolute_ratings or recommender.task != "rating" else recommender.global_mean
        )
        self.low, self.high = recommender.rating_range or (float("-inf"), float("inf"))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.model(users, items) + self.offset, self.low, self.high)


def _save_npy(path: Path, array: np.ndarray) -> Path:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def parquet_available() -> bool:
    """Whether pyarrow can be imported (the ``parquet`` extra)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _save_parquet(path: Path, raw_ids: list, table: np.ndarray) -> Path:
    """One row per id: column ``id`` (the raw user/item id) and ``embedding`` (fixed-size float32 list)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.array(np.ascontiguousarray(table, dtype=np.float32).reshape(-1))
    ids = pa.array(raw_ids) if all(isinstance(i, int) for i in raw_ids) else pa.array([str(i) for i in raw_ids])
    frame = pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(values, table.shape[1])})
    buffer = io.BytesIO()
    pq.write_table(frame, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def export_recommender(recommender: Recommender, folder: Path) -> dict:
    """Write ``model.onnx`` (inputs ``users``, ``items``; output ``score``), the embeddings and id maps.

    The embedding tables go to ``<name>.npy`` (row ``i`` = internal index ``i``) and, when pyarrow is
    installed, ``<name>.parquet`` (columns ``id``, ``embedding``: raw ids beside their vectors).

    Returns:
        Name -> written path, plus ``max_abs_diff`` of the ONNX parity check and ``parquet`` (bool).

    Raises:
        ConfigError: If the model cannot be expressed in ONNX (the message says why).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: dict = {}
    scoring = ScoringModel(recommender).eval()
    n = min(8, len(recommender.user_map), len(recommender.item_map))
    example = (torch.arange(n), torch.arange(n).flip(0))
    try:
        written["onnx"] = export_onnx(scoring, example, folder / "model.onnx", input_names=["users", "items"],
                                      output_names=["score"])  # fmt: skip
    except Exception as error:  # the exporter raises many types for unsupported operators
        raise ConfigError(
            f"model {recommender.model_name!r} cannot be exported to ONNX ({type(error).__name__})."
        ) from None
    check = (torch.arange(3), torch.tensor([0, 1, 2]) % len(recommender.item_map))
    report = check_onnx_parity(scoring, written["onnx"], check, tolerance=1e-3)
    written["max_abs_diff"] = float(report.max_abs_diff)
    written["parquet"] = parquet_available()
    with torch.no_grad():
        tables = (
            ("user_embeddings", recommender.model.user_embeddings(), recommender.user_map),
            ("item_embeddings", recommender.model.item_embeddings(), recommender.item_map),
        )
        for name, table, id_map in tables:
            if table is None:
                continue
            array = table.detach().float().numpy()
            written[name] = _save_npy(folder / f"{name}.npy", array)
            if written["parquet"] and len(array) == len(id_map):
                written[f"{name}_parquet"] = _save_parquet(folder / f"{name}.parquet", id_map.state(), array)
    atomic_write_json(folder / "user_ids.json", recommender.user_map.state())
    atomic_write_json(folder / "item_ids.json", recommender.item_map.state())
    written["id_maps"] = folder / "user_ids.json"
    return written
