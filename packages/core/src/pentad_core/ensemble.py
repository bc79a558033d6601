"""Deep ensembles (Lakshminarayanan et al. 2017) inside one module: ``K`` independently initialised
copies of a network, trained side by side in one run and averaged at inference.

Each member is trained on its own loss: a domain's training step computes the loss of every slice
of :func:`each_member` and sums them. The members share no parameter, so the gradient of the sum
with respect to a member is that member's own gradient, and a per-parameter optimiser (SGD with
momentum and weight decay, Adam) moves every member exactly as it would alone on the same batches.
A gradient-norm clip (``trainer.gradient_clip_val``) is the exception: Lightning takes the norm over
all members together, so when it triggers it scales every member's step by the same factor. Training
the average instead would make the members co-adapt into one wider network and lose most of the
ensemble's gain.

One module means one checkpoint, one ``config.yaml`` entry (``ensemble: K``), and the unchanged
predictor, export and serving paths: ``forward`` is the members' mean, a plain graph for ONNX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pentad_core.errors import ConfigError


class Ensemble(nn.Module):
    """``K`` networks with the same interface; the output is their mean.

    Args:
        members: The networks, each independently initialised (``K >= 2``).

    Example:
        >>> net = Ensemble([make_net() for _ in range(3)])
        >>> net(x).shape == make_net()(x).shape        # the members' mean
        >>> net.each(x).shape == (3, *make_net()(x).shape)
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def each(self, *args: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """Every member's output stacked: ``(K, *output shape)``."""
        return torch.stack([member(*args, **kwargs) for member in self.members])

    def forward(self, *args: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """The members' mean output (the shape of one member's output)."""
        return self.each(*args, **kwargs).mean(dim=0)


def build_ensemble(factory: Callable[[], nn.Module], size: int) -> nn.Module:
    """``factory()`` alone when ``size`` is 1 (the state-dict keys of a single network stay as they
    were), otherwise an :class:`Ensemble` of ``size`` calls, each drawing its own initialisation
    from the global random stream in turn.

    Raises:
        ConfigError: ``size`` below 1 (the config key ``ensemble`` of every app that takes it).
    """
    if size < 1:
        raise ConfigError(f"ensemble must be at least 1 (networks averaged), got {size}.")
    if size == 1:
        return factory()
    return Ensemble([factory() for _ in range(size)])


def members(net: nn.Module) -> list[nn.Module]:
    """The networks inside ``net``: an ensemble's members, or ``[net]``."""
    return list(net.members) if isinstance(net, Ensemble) else [net]


def each_member(net: nn.Module, *args: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """Every member's output of ``net(*args)`` as ``(K, *output shape)``; ``K = 1`` for a single network."""
    if isinstance(net, Ensemble):
        return net.each(*args, **kwargs)
    return net(*args, **kwargs).unsqueeze(0)
