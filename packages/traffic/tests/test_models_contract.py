"""Contract tests run over every registered model (a new model is picked up automatically)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from pentad_core.errors import ConfigError
from pentad_core.registry import ModelInfo
from pentad_traffic import MODELS, build_model


def make(name: str, num_nodes: int, input_len: int, horizon: int, in_features: int = 1):
    rng = np.random.default_rng(0)
    adjacency = (rng.random((num_nodes, num_nodes)) < 0.4).astype(np.float32) * rng.random((num_nodes, num_nodes))
    torch.manual_seed(0)
    return build_model(
        name,
        num_nodes=num_nodes,
        input_len=input_len,
        horizon=horizon,
        in_features=in_features,
        adjacency=adjacency.astype(np.float32),
    )


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize(
    ("num_nodes", "input_len", "horizon", "in_features"), [(5, 12, 12, 1), (1, 6, 3, 3), (9, 4, 1, 2)]
)
def test_output_shape_and_finiteness(name: str, num_nodes: int, input_len: int, horizon: int, in_features: int):
    model = make(name, num_nodes, input_len, horizon, in_features).eval()
    x = torch.rand(3, input_len, num_nodes, in_features)
    out = model(x)
    assert out.shape == (3, horizon, num_nodes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS.names())
def test_gradients_reach_every_parameter(name: str):
    model = make(name, 6, 12, 4, 2).train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:  # a heuristic baseline: nothing to learn, and the registry says so
        assert not MODELS.info(name).trainable
        return
    x = torch.rand(4, 12, 6, 2)
    loss = (model(x) - torch.rand(4, 4, 6)).pow(2).mean()
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", MODELS.names())
def test_state_dict_round_trip_gives_identical_outputs(name: str):
    model = make(name, 7, 12, 6).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = make(name, 7, 12, 6).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.rand(2, 12, 7, 1)
    assert torch.equal(model(x), fresh(x))


@pytest.mark.parametrize("name", MODELS.names())
def test_wrong_input_shape_is_rejected(name: str):
    model = make(name, 5, 12, 3)
    with pytest.raises(ValueError, match="expects"):
        model(torch.rand(2, 12, 4, 1))


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_has_its_metadata(name: str):
    info = MODELS.info(name)
    assert isinstance(info, ModelInfo)
    assert info.tasks == ("forecast",) and info.inputs == "window"
    assert MODELS.describe(name)
    # Learned models are the ones with parameters for gradient descent and an optimiser.
    model = make(name, 4, 12, 3)
    assert info.trainable == (any(p.requires_grad for p in model.parameters()) and not model.closed_form)


def test_baselines_are_not_trainable_and_the_networks_are():
    learned = {name for name in MODELS.names() if MODELS.info(name).trainable}
    assert learned == {"gru", "gcn", "tgcn", "a3tgcn", "stgcn", "graph-wavenet"}


@pytest.mark.parametrize("name", MODELS.names())
def test_a_misspelled_model_option_names_it(name: str):
    with pytest.raises(ConfigError, match="hiden") as error:
        build_model(name, {"hiden": 8}, num_nodes=3, input_len=12, horizon=2)
    assert "Valid options" in str(error.value)


def test_baselines_compute_what_they_promise():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3, 1)
    persistence = build_model("persistence", num_nodes=3, input_len=4, horizon=2)
    assert torch.equal(persistence(x), x[:, -1:, :, 0].expand(-1, 2, -1))
    average = build_model("historical-average", num_nodes=3, input_len=4, horizon=2)
    assert torch.allclose(average(x)[:, 0], x[..., 0].mean(1))


def test_var_least_squares_recovers_a_linear_system():
    # Targets are an exact linear function of the last two steps; the fitted VAR must reproduce it.
    torch.manual_seed(0)
    x = torch.rand(300, 2, 3, 1)
    transition = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.9]])
    y = (x[:, -1, :, 0] @ transition.T + 0.3 * x[:, 0, :, 0] + 0.5)[:, None]  # (S, 1, 3)
    model = build_model("var", {"lags": 2, "ridge": 1e-9}, num_nodes=3, input_len=2, horizon=1).fit(x, y)
    assert torch.allclose(model(x), y, atol=1e-4)


@pytest.mark.parametrize("name", ["gcn", "tgcn", "stgcn", "a3tgcn", "graph-wavenet"])
def test_graph_models_use_the_graph(name: str):
    # Changing one sensor's history must change its neighbour's forecast.
    adjacency = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    torch.manual_seed(0)
    model = build_model(name, num_nodes=3, input_len=12, horizon=2, adjacency=adjacency).eval()
    x = torch.rand(1, 12, 3, 1)
    changed = x.clone()
    changed[:, :, 0] += 1.0
    assert not torch.allclose(model(x)[:, :, 1], model(changed)[:, :, 1])


def test_joint_gru_uses_other_sensors_and_node_wise_gru_does_not():
    x = torch.rand(1, 12, 3, 1)
    changed = x.clone()
    changed[:, :, 0] += 1.0
    for joint in (True, False):
        torch.manual_seed(0)
        model = build_model("gru", {"joint": joint}, num_nodes=3, input_len=12, horizon=2).eval()
        assert model(x).shape == (1, 2, 3)
        moved = not torch.allclose(model(x)[:, :, 1], model(changed)[:, :, 1])
        assert moved == joint


def test_highway_least_squares_recovers_own_and_neighbour_lags():
    # Targets are an exact linear function of each sensor's own lags and its neighbourhood mean.
    from pentad_traffic.models.base import AutoregressiveHighway, random_walk

    torch.manual_seed(0)
    adjacency = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    support = random_walk(adjacency)
    x = torch.rand(200, 3, 3, 1)
    speed = x[..., 0]
    neighbours = torch.einsum("nm,blm->bln", support, speed)
    y = torch.stack([0.7 * speed[:, -1] + 0.2 * neighbours[:, 0] + 0.1, speed[:, 0] - neighbours[:, -1]], 1)
    highway = AutoregressiveHighway(3, 2, support).fit(x, y, ridge=1e-9)
    assert torch.allclose(highway(x), y, atol=1e-4)
    # Without the neighbourhood the same targets cannot be reproduced.
    own_only = AutoregressiveHighway(3, 2).fit(x, y, ridge=1e-9)
    assert (own_only(x) - y).abs().max() > 1e-2


def test_per_sensor_highway_recovers_coefficients_that_differ_by_sensor():
    # Each sensor continues its own last speed with a different gain and offset: only per-sensor
    # coefficients fit that; the shared ones alone cannot, and missing targets are left out.
    from pentad_traffic.models.base import AutoregressiveHighway

    torch.manual_seed(0)
    x = torch.rand(300, 4, 3, 1)
    gain, offset = torch.tensor([0.5, 1.0, 1.5]), torch.tensor([0.0, 0.2, -0.3])
    y = (gain * x[:, -1, :, 0] + offset)[:, None].repeat(1, 2, 1)
    y_with_gaps = y.clone()
    y_with_gaps[:10, :, 1] = float("nan")
    per_sensor = AutoregressiveHighway(4, 2, num_nodes=3).fit(x, y_with_gaps, ridge=1e-9, sensor_ridge=1e-9)
    assert torch.allclose(per_sensor(x), y, atol=1e-4)
    shared = AutoregressiveHighway(4, 2).fit(x, y, ridge=1e-9)
    assert (shared(x) - y).abs().max() > 0.1
    # A large sensor penalty shrinks the per-sensor weights to zero (each sensor's mean offset, the
    # unpenalised intercept, stays).
    shrunk = AutoregressiveHighway(4, 2, num_nodes=3).fit(x, y, ridge=1e-9, sensor_ridge=1e9)
    assert shrunk.sensor_weight.abs().max() < 1e-6 and shrunk.sensor_bias.abs().max() > 0.05
    # The per-sensor coefficients start at zero and receive gradients.
    fresh = AutoregressiveHighway(4, 2, num_nodes=3)
    assert fresh.sensor_weight.abs().sum() == 0
    fresh(x).square().mean().backward()
    assert fresh.sensor_weight.grad.abs().sum() > 0 and fresh.sensor_bias.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_exports_to_onnx_with_parity_or_says_it_cannot(name: str, tmp_path):
    # What `export` and `serve` (ONNX Runtime backend) run: a dynamic batch axis, checked on another
    # batch size. A model that cannot be exported must say so in its registry metadata.
    from pentad_core.export import check_onnx_parity, export_onnx

    model = make(name, 5, 12, 6, 2).eval()
    example, other = torch.rand(2, 12, 5, 2), torch.rand(3, 12, 5, 2)
    if not MODELS.info(name).exportable:
        with pytest.raises(Exception):  # noqa: B017  (whatever the exporter raises)
            export_onnx(model, example, tmp_path / "model.onnx")
        return
    path = export_onnx(model, example, tmp_path / "model.onnx", input_names=["inputs"], output_names=["forecast"])
    report = check_onnx_parity(model, path, other, tolerance=1e-4)
    assert report.passed and report.batch_size == 3


def test_strongest_neighbours_orders_by_weight_and_pads_sensors_with_few():
    from pentad_traffic.models.base import strongest_neighbours

    adjacency = torch.tensor(
        [
            [5.0, 0.2, 0.9, 0.5],  # the diagonal (the sensor itself) is ignored
            [0.3, 1.0, 0.3, 0.0],  # equal weights: the lower index first
            [0.0, 0.0, 1.0, 0.0],  # no neighbour at all
            [0.1, 0.0, 0.0, 0.0],
        ]
    )
    index = strongest_neighbours(adjacency, 2)
    assert index.dtype == torch.long
    assert index.tolist() == [[2, 3], [0, 2], [-1, -1], [0, -1]]
    assert strongest_neighbours(adjacency, 6).shape == (4, 6)  # more than there are: padded with -1


def test_neighbour_highway_reads_each_neighbours_last_readings():
    # Features: own window relative to its last step and as is, then each neighbour's last R readings
    # minus the sensor's own last reading, neighbour by neighbour; a missing neighbour reads zero.
    from pentad_traffic.models.base import AutoregressiveHighway

    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3, 1)  # (B, L, N, F)
    index = torch.tensor([[2, 1], [0, -1], [1, 0]])
    highway = AutoregressiveHighway(4, 5, num_nodes=3, neighbour_index=index, neighbour_lags=2)
    features = highway.lags(x)
    assert features.shape == (2, 3, 2 * 4 + 2 * 2)
    speed = x[..., 0]
    assert torch.equal(features[:, 0, 8:10], speed[:, -2:, 2] - speed[:, -1:, 0])
    assert torch.equal(features[:, 0, 10:12], speed[:, -2:, 1] - speed[:, -1:, 0])
    assert torch.equal(features[:, 1, 10:12], torch.zeros(2, 2))
    assert highway(x).shape == (2, 5, 3)
    assert highway.linear.in_features == 12 and highway.sensor_weight.shape == (3, 12, 5)


def test_neighbour_highway_fit_recovers_a_sensor_driven_by_a_neighbours_lag():
    # Sensor 0 follows the readings of its strongest neighbour (2) two and three steps back, sensor 1
    # its own last step: the fitted linear map (its Jacobian) has exactly these coefficients. The
    # neighbourhood mean cannot express it.
    from pentad_traffic.models.base import AutoregressiveHighway, random_walk, strongest_neighbours

    torch.manual_seed(0)
    adjacency = torch.tensor([[1.0, 0.5, 0.9], [0.5, 1.0, 0.0], [0.9, 0.0, 1.0]])
    x = torch.rand(400, 4, 3, 1)
    speed = x[..., 0]
    coefficients = torch.zeros(2, 3, 4, 3)  # (H, N, L, N): output step and sensor <- input step and sensor
    coefficients[0, 0, 2, 2], coefficients[1, 0, 1, 2] = 0.8, -0.6
    coefficients[:, 1, 3, 1] = 1.5
    coefficients[:, 2, 3, 2] = 1.0
    y = torch.einsum("hnlm,blm->bhn", coefficients, speed) + 0.1
    index = strongest_neighbours(adjacency, 2)
    highway = AutoregressiveHighway(4, 2, num_nodes=3, neighbour_index=index, neighbour_lags=3)
    highway.fit(x, y, ridge=1e-9, sensor_ridge=1e-9)
    jacobian = torch.autograd.functional.jacobian(highway, torch.rand(1, 4, 3, 1))[0, ..., 0, :, :, 0]
    assert torch.allclose(jacobian, coefficients, atol=1e-3)
    fresh = torch.rand(50, 4, 3, 1)
    assert torch.allclose(highway(fresh), torch.einsum("hnlm,blm->bhn", coefficients, fresh[..., 0]) + 0.1, atol=1e-3)
    mean_only = AutoregressiveHighway(4, 2, random_walk(adjacency), num_nodes=3).fit(x, y, 1e-9, 1e-9)
    assert (mean_only(x) - y).abs().max() > 0.05


@pytest.mark.parametrize("name", ["graph-wavenet", "tgcn", "a3tgcn", "stgcn"])
def test_neighbour_highway_is_off_by_default_and_an_option(name: str):
    assert make(name, 5, 12, 3).highway.neighbour_index is None
    model = build_model(
        name,
        {"neighbours": 2, "neighbour_lags": 3},
        num_nodes=5,
        input_len=12,
        horizon=3,
        adjacency=np.ones((5, 5), np.float32),
    )
    assert model.highway.neighbour_index.tolist() == [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]]
    assert model(torch.rand(2, 12, 5, 1)).shape == (2, 3, 5)
    with pytest.raises(ConfigError, match="neighbour_lags"):
        build_model(
            name,
            {"neighbours": 2, "neighbour_lags": 13},
            num_nodes=5,
            input_len=12,
            horizon=3,
            adjacency=np.ones((5, 5)),
        )


def test_neighbour_highway_needs_a_graph_and_exports_to_onnx(tmp_path):
    from pentad_core.export import check_onnx_parity, export_onnx

    with pytest.raises(ConfigError, match="graph"):
        build_model("graph-wavenet", {"neighbours": 2}, num_nodes=5, input_len=12, horizon=3)
    model = build_model(
        "graph-wavenet", {"neighbours": 3}, num_nodes=5, input_len=12, horizon=3, adjacency=np.ones((5, 5), np.float32)
    ).eval()
    path = export_onnx(model, torch.rand(2, 12, 5, 1), tmp_path / "model.onnx", input_names=["inputs"])
    assert check_onnx_parity(model, path, torch.rand(3, 12, 5, 1), tolerance=1e-4).passed
