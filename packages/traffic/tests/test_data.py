"""Dataset readers: correct parsing and clear errors on malformed files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pentad_core.errors import DataError
from pentad_core.testing import requires_dataset
from pentad_traffic.data import generate_synthetic, load_csv, load_dataset, load_dcrnn
from pentad_traffic.data.readers import gaussian_kernel_adjacency, read_adj_pickle


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_adjacency_and_timestamps(tmp_path: Path) -> None:
    write(
        tmp_path / "speeds.csv",
        "timestamp,a,b\n2012-03-01 00:00:00,60,50\n2012-03-01 00:15:00,61,0\n2012-03-01 00:30:00,62,51\n",
    )
    write(tmp_path / "adjacency.csv", "1,0.5\n0.5,1\n")
    data = load_csv(tmp_path)
    assert data.speeds.shape == (3, 2)
    assert data.sensor_ids == ["a", "b"]
    assert data.steps_per_day == 96  # 15-minute steps read from the timestamps
    assert data.time_of_day()[1] == pytest.approx(15 / 1440)
    assert data.day_of_week()[0] == 3  # 1 March 2012 was a Thursday
    assert data.speeds[1, 1] == 0.0  # zeros are kept: missing readings, masked by the protocol


def test_adjacency_with_header_is_reordered_to_the_speed_columns(tmp_path: Path) -> None:
    write(tmp_path / "speeds.csv", "a,b\n1,2\n3,4\n")
    write(tmp_path / "adjacency.csv", "b,a\n1,0.2\n0.7,1\n")  # row b: (b,b)=1, (b,a)=0.2
    data = load_csv(tmp_path)
    np.testing.assert_allclose(data.adjacency, [[1.0, 0.7], [0.2, 1.0]], rtol=1e-6)


@pytest.mark.parametrize(
    ("speeds", "message"),
    [
        ("a,b\n1,2\n3\n", "line 3 has 1 cells"),
        ("a,b\n1,2\n3,fast\n", "line 3, column 2 holds 'fast'"),
        ("a,b\n1,2\n3,nan\n", "NaN"),
        ("a,b\n1,2\n3,\n", "an empty cell"),
        ("a,b\n", "no data rows"),
    ],
)
def test_malformed_speed_tables_raise_data_error_naming_the_place(tmp_path: Path, speeds: str, message: str) -> None:
    write(tmp_path / "speeds.csv", speeds)
    write(tmp_path / "adjacency.csv", "1,0\n0,1\n")
    with pytest.raises(DataError, match=message):
        load_csv(tmp_path)


def test_adjacency_of_the_wrong_shape_is_rejected(tmp_path: Path) -> None:
    write(tmp_path / "speeds.csv", "a,b,c\n1,2,3\n4,5,6\n")
    write(tmp_path / "adjacency.csv", "1,0\n0,1\n")
    with pytest.raises(DataError, match="must be 3x3"):
        load_csv(tmp_path)
    write(tmp_path / "adjacency.csv", "1,0,0\n0,1,0\n")
    with pytest.raises(DataError, match="square"):
        load_csv(tmp_path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="speeds.csv"):
        load_csv(tmp_path)


def test_distances_become_gaussian_kernel_weights(tmp_path: Path) -> None:
    write(tmp_path / "speeds.csv", "a,b,c\n1,2,3\n4,5,6\n")
    write(tmp_path / "distances.csv", "from,to,cost\na,b,100\nb,c,300\nx,a,5\n")
    data = load_csv(tmp_path, adjacency=None, distances="distances.csv", kernel_threshold=0.1)
    sigma = np.std([0.0, 0.0, 0.0, 100.0, 300.0])  # the diagonal zeros count as finite distances
    assert data.adjacency[0, 1] == pytest.approx(np.exp(-((100 / sigma) ** 2)), rel=1e-5)
    assert data.adjacency[1, 0] == 0.0  # directed: b -> a is not listed
    assert data.adjacency[1, 2] == 0.0  # exp(-(300/sigma)^2) is under the threshold
    assert np.diag(data.adjacency).tolist() == [1.0, 1.0, 1.0]


def test_gaussian_kernel_ignores_unknown_sensors() -> None:
    weights = gaussian_kernel_adjacency([("a", "zz", 1.0)], ["a", "b"])
    assert weights.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_dcrnn_layout_is_read_and_aligned(tmp_path: Path, write_dcrnn) -> None:
    speeds = np.array([[60.0, 0.0], [61.0, 55.0], [62.0, 56.0]], dtype=np.float32)
    adjacency = np.array([[1.0, 0.3], [0.0, 1.0]], dtype=np.float32)
    write_dcrnn(tmp_path, speeds, ["10", "20"], adjacency)
    data = load_dcrnn("metr-la", "metr-la.h5", ("adj_mx.pkl",), tmp_path)
    assert data.speeds.tolist() == speeds.tolist()
    np.testing.assert_allclose(data.adjacency, adjacency)
    assert data.time_of_day()[1] == pytest.approx(5 / 1440)


class Boom:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_adjacency_pickle_refuses_code(tmp_path: Path) -> None:
    path = tmp_path / "adj_mx.pkl"
    path.write_bytes(pickle.dumps((["a"], {"a": 0}, Boom())))
    with pytest.raises(DataError, match="refusing to load"):
        read_adj_pickle(path)


def test_nan_in_dcrnn_table_is_rejected(tmp_path: Path, write_dcrnn) -> None:
    write_dcrnn(tmp_path, np.array([[1.0], [np.nan]], dtype=np.float32), ["1"], np.eye(1, dtype=np.float32))
    with pytest.raises(DataError, match="NaN"):
        load_dcrnn("metr-la", "metr-la.h5", ("adj_mx.pkl",), tmp_path)


def test_synthetic_is_deterministic_periodic_and_connected() -> None:
    first, second = generate_synthetic(num_nodes=8, num_days=7, seed=3), generate_synthetic(8, 7, seed=3)
    assert np.array_equal(first.speeds, second.speeds)
    assert first.speeds.shape == (7 * 288, 8)
    assert np.isfinite(first.speeds).all() and first.speeds.min() > 0
    daily = first.speeds[: 5 * 288].reshape(5, 288, 8).mean(axis=(0, 2))
    assert daily[8 * 12] < daily[3 * 12] - 5  # 08:00 rush hour is slower than 03:00
    assert np.allclose(first.adjacency, first.adjacency.T)


def test_a_misspelled_dataset_option_names_it() -> None:
    from pentad_core.errors import ConfigError

    with pytest.raises(ConfigError, match="num_node"):
        load_dataset("synthetic", options={"num_node": 4})
    assert load_dataset("synthetic", options={"num_nodes": 4, "num_days": 1}).num_nodes == 4


def test_registry_metadata_of_the_datasets() -> None:
    from pentad_traffic.registry import DATASETS

    assert DATASETS.info("synthetic").generated and not DATASETS.info("synthetic").files
    assert {file.filename for file in DATASETS.info("los-loop").files} == {"los_speed.csv", "los_adj.csv"}
    assert all(not DATASETS.info(name).generated for name in DATASETS.names() if name != "synthetic")


def test_missing_dataset_folders_say_the_command_that_works(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PENTAD_DATA", str(tmp_path))
    with pytest.raises(DataError) as error:
        load_dataset("los-loop")
    assert "`apps/traffic data download los-loop`" in str(error.value)
    assert "--dataset" not in str(error.value)
    (tmp_path / "metr-la").mkdir()
    with pytest.raises(DataError, match="by hand") as error:
        load_dataset("metr-la")  # no download exists: the message must not offer one
    assert "download" not in str(error.value).replace("Google Drive", "")


def test_unknown_dataset_lists_known_names() -> None:
    from pentad_core.errors import ConfigError

    with pytest.raises(ConfigError, match="los-loop"):
        load_dataset("los-lop")


@requires_dataset("los-loop")
def test_los_loop_loads_and_persistence_matches_the_published_protocol() -> None:
    import pentad_traffic as pt
    from pentad_traffic.metrics import horizon_metrics

    data = load_dataset("los-loop")
    assert data.speeds.shape == (2016, 207) and data.adjacency.shape == (207, 207)
    prepared = pt.prepare(data, pt.TGCN_PROTOCOL)
    x, y = prepared.test.tensors()
    model = pt.build_model("persistence", num_nodes=207, input_len=12, horizon=12)
    scores = horizon_metrics(prepared.scaler.inverse(model(x)), y, (3, 12), ("rmse", "mae"))
    # The anchor measured 5.539 / 3.155 (15 min) and 8.446 / 4.428 (60 min) on the same split.
    assert scores["h3/rmse"] == pytest.approx(5.539, abs=1e-3)
    assert scores["h3/mae"] == pytest.approx(3.155, abs=1e-3)
    assert scores["h12/rmse"] == pytest.approx(8.446, abs=1e-3)


@requires_dataset("los-loop")
def test_los_loop_var_beats_persistence_at_every_horizon() -> None:
    import pentad_traffic as pt
    from pentad_traffic.metrics import horizon_metrics

    prepared = pt.prepare(load_dataset("los-loop"), pt.TGCN_PROTOCOL)
    model = pt.build_model("var", num_nodes=207, input_len=12, horizon=12)
    model.fit(*[t if i == 0 else prepared.scaler.transform(t) for i, t in enumerate(prepared.train.tensors())])
    x, y = prepared.test.tensors()
    persistence = pt.build_model("persistence", num_nodes=207, input_len=12, horizon=12)
    with torch.no_grad():
        var = horizon_metrics(prepared.scaler.inverse(model(x)), y, (3, 6, 9, 12), ("rmse",))
        naive = horizon_metrics(prepared.scaler.inverse(persistence(x)), y, (3, 6, 9, 12), ("rmse",))
    for key in var:
        assert var[key] < naive[key], key
