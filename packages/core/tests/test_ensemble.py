"""Deep ensembles in one module: the mean at inference, each member trained as it would be alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pentad_core.ensemble import Ensemble, build_ensemble, each_member, members
from pentad_core.errors import ConfigError


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_forward_is_the_members_mean_and_each_stacks_them():
    torch.manual_seed(0)
    net = build_ensemble(_net, 3)
    x = torch.randn(5, 4)
    outputs = [member(x) for member in net.members]
    assert net.each(x).shape == (3, 5, 3)
    torch.testing.assert_close(net.each(x), torch.stack(outputs))
    torch.testing.assert_close(net(x), (outputs[0] + outputs[1] + outputs[2]) / 3)
    assert not torch.equal(outputs[0], outputs[1])  # each member drew its own initialisation


def test_one_member_is_the_plain_network_with_its_own_keys():
    torch.manual_seed(0)
    single = build_ensemble(_net, 1)
    assert isinstance(single, nn.Sequential) and set(single.state_dict()) == set(_net().state_dict())
    x = torch.randn(2, 4)
    assert each_member(single, x).shape == (1, 2, 3)
    torch.testing.assert_close(each_member(single, x)[0], single(x))
    assert members(single) == [single]


def test_the_first_member_starts_where_a_single_network_of_the_same_seed_would():
    torch.manual_seed(7)
    single = _net()
    torch.manual_seed(7)
    ensemble = build_ensemble(_net, 2)
    for a, b in zip(single.parameters(), ensemble.members[0].parameters()):
        assert torch.equal(a, b)


def test_summed_member_losses_train_every_member_as_it_would_alone():
    """SGD with momentum and weight decay on the sum of the members' losses moves each member
    exactly as training it alone on the same batches."""
    torch.manual_seed(0)
    ensemble = build_ensemble(_net, 2)
    alone = [copy.deepcopy(member) for member in ensemble.members]
    batches = [(torch.randn(6, 4), torch.randint(0, 3, (6,))) for _ in range(4)]

    def sgd(params):
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)

    joint = sgd(ensemble.parameters())
    for x, y in batches:
        joint.zero_grad()
        loss = sum(nn.functional.cross_entropy(logits, y) for logits in each_member(ensemble, x))
        loss.backward()
        joint.step()
    for net in alone:
        optimizer = sgd(net.parameters())
        for x, y in batches:
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    for member, net in zip(ensemble.members, alone):
        for a, b in zip(member.parameters(), net.parameters()):
            torch.testing.assert_close(a, b)


def test_sizes_below_two_members_are_refused():
    with pytest.raises(ConfigError, match="ensemble must be at least 1"):
        build_ensemble(_net, 0)
    with pytest.raises(ValueError, match="at least 2"):
        Ensemble([_net()])


def test_the_ensemble_exports_to_onnx_as_its_mean(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    torch.manual_seed(0)
    net = build_ensemble(_net, 3).eval()
    x = torch.randn(2, 4)
    path = tmp_path / "ensemble.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["x"], dynamo=False)
    (out,) = onnxruntime.InferenceSession(str(path)).run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), net(x).detach(), atol=1e-5, rtol=1e-5)
