"""GLocal-K (Han et al., CIKM 2021): an item-based autoencoder with kernelised (local) weights,
fine-tuned with a global convolution kernel.

Each item is the vector of its ratings by all users (``0`` = unobserved); the network
reconstructs the vector, and the rating of ``(u, i)`` is entry ``u`` of item ``i``'s
reconstruction. The local kernel (Muller et al., "Kernelized synaptic weight matrices", ICML
2018) multiplies each weight matrix element-wise by ``max(0, 1 - ||a_j - b_k||^2)`` between
learned low-dimensional vectors of input unit ``j`` and output unit ``k``, which lets the
network learn sparse connectivity. The global kernel is a ``g x g`` convolution filter, a
learned mixture of per-item filters weighted by the items' mean predicted rating, applied to the
rating matrix before the autoencoder during fine-tuning.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from pentad_recsys.data.interactions import Interactions
from pentad_recsys.models.base import FrozenTable, RecModel
from pentad_recsys.registry import MODELS


class KernelLayer(nn.Module):
    """Dense layer with RBF-like kernelised weights: ``act(x @ (W * K(a, b)) + c)``.

    Args:
        n_in: Input size.
        n_out: Output size.
        kernel_dim: Dimension of the unit vectors ``a`` and ``b``.
        activation: ``"sigmoid"`` or ``"identity"``.
    """

    def __init__(self, n_in: int, n_out: int, kernel_dim: int = 5, activation: str = "sigmoid") -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (n_in + n_out))
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.in_vectors = nn.Parameter(torch.randn(n_in, kernel_dim) * 1e-3)
        self.out_vectors = nn.Parameter(torch.randn(n_out, kernel_dim) * 1e-3)
        self.activation = activation

    def kernel(self) -> torch.Tensor:
        """``[n_in, n_out]`` connection strengths in ``[0, 1]``."""
        a, b = self.in_vectors, self.out_vectors
        # ||a - b||^2 by expansion: one matmul instead of cdist (much faster backward)
        distance2 = a.square().sum(1, keepdim=True) + b.square().sum(1) - 2.0 * a @ b.T
        return torch.clamp(1.0 - distance2, min=0.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, n_in] -> ([B, n_out], kernel sparsity penalty, weight L2 penalty)``."""
        kernel = self.kernel()
        y = x @ (self.weight * kernel) + self.bias
        if self.activation == "sigmoid":
            y = torch.sigmoid(y)
        return y, 0.5 * kernel.square().sum(), 0.5 * self.weight.square().sum()


@MODELS.register(
    "glocal-k",
    description="GLocal-K: kernelised item autoencoder + global kernel (Han et al. 2021), ratings only",
    tasks=("rating",),
    inputs="ids",
)
class GLocalK(RecModel):
    """Kernelised item autoencoder with a global convolution kernel (rating task only).

    Args:
        num_users: Number of users (the autoencoder's input and output size).
        num_items: Number of items.
        hidden: Hidden units per layer.
        layers: Number of hidden (sigmoid) layers.
        kernel_dim: Dimension of the local kernel's unit vectors.
        global_kernel_size: Side ``g`` of the global convolution filter.
        lambda_weights: L2 weight of the layer weights (``lambda_2`` in the paper).
        lambda_kernel: Weight of the kernel sparsity penalty (``lambda_s``).
        use_global_kernel: Whether the global kernel is active (set by the fine-tuning stage).
        finetune_epochs: L-BFGS epochs of the global-kernel stage after pre-training (0: the
            local kernel only, i.e. the Sparse FC model of Muller et al.).
        conv_penalty: L2 weight of the global kernel's filters in the fine-tuning loss (``None``:
            ``lambda_weights``; the authors' code adds none: 0).
        live_summary: Recompute the items' mean reconstruction (which weights the per-item filters)
            at every fine-tuning step, with gradients, as the authors' code does; False freezes it
            when the stage starts.
    """

    full_batch = True
    absolute_ratings = True
    _dynamic_buffers = ("ratings_matrix",)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        hidden: int = 500,
        layers: int = 2,
        kernel_dim: int = 5,
        global_kernel_size: int = 3,
        lambda_weights: float = 20.0,
        lambda_kernel: float = 0.006,
        use_global_kernel: bool = False,
        finetune_epochs: int = 0,
        conv_penalty: float | None = None,
        live_summary: bool = False,
    ) -> None:
        super().__init__(num_users, num_items)
        sizes = [num_users] + [hidden] * layers
        self.encoder = nn.ModuleList(KernelLayer(a, b, kernel_dim) for a, b in itertools.pairwise(sizes))
        self.decoder = KernelLayer(hidden, num_users, kernel_dim, "identity")
        self.conv_kernel = nn.Parameter(torch.randn(num_items, global_kernel_size**2) * 0.1)
        self.global_kernel_size = global_kernel_size
        self.lambda_weights, self.lambda_kernel = lambda_weights, lambda_kernel
        self.use_global_kernel = use_global_kernel
        self.finetune_epochs = finetune_epochs
        self.conv_penalty = lambda_weights if conv_penalty is None else conv_penalty
        self.live_summary = live_summary
        self.register_buffer("ratings_matrix", torch.zeros(num_items, num_users))
        self.register_buffer("item_summary", torch.zeros(num_items))
        self._penalty = torch.zeros(())

    def fit_statistics(self, train: Interactions) -> None:
        matrix = torch.zeros(self.num_items, self.num_users)
        matrix[torch.as_tensor(train.items), torch.as_tensor(train.users)] = torch.as_tensor(train.ratings)
        self.ratings_matrix = matrix

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """The kernelised autoencoder: ``[B, num_users] -> [B, num_users]``; stores the penalty."""
        sparsity = weights = 0.0
        for layer in [*self.encoder, self.decoder]:
            x, s, w = layer(x)
            sparsity, weights = sparsity + s, weights + w
        self._penalty = self.lambda_kernel * sparsity + self.lambda_weights * weights
        return x

    def global_filter(self) -> torch.Tensor:
        """``[g, g]`` filter: the per-item filters weighted by the items' mean predicted rating."""
        g = self.global_kernel_size
        summary = self.local(self.ratings_matrix).mean(dim=1) if self.live_summary else self.item_summary
        return (summary @ self.conv_kernel).reshape(g, g)

    @torch.no_grad()
    def start_global_stage(self) -> None:
        """Summarise items by the local model's mean reconstruction and switch the global kernel on."""
        self.item_summary = self.local(self.ratings_matrix).mean(dim=1)
        self.use_global_kernel = True

    def reconstruct(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstructed ratings of ``items`` (all when ``None``): ``[B, num_users]``."""
        matrix = self.ratings_matrix
        if self.use_global_kernel:
            g = self.global_kernel_size
            filtered = F.conv2d(matrix[None, None], self.global_filter()[None, None], padding=g // 2)
            matrix = torch.relu(filtered[0, 0])
        rows = matrix if items is None else matrix[items]
        return self.local(rows)

    def full_batch_loss(self) -> torch.Tensor:
        """Half the sum of squared errors on observed entries plus the penalties (the paper's loss)."""
        prediction = self.reconstruct()
        observed = self.ratings_matrix != 0
        error = torch.where(observed, self.ratings_matrix - prediction, torch.zeros_like(prediction))
        penalty = self._penalty
        if self.use_global_kernel:
            penalty = penalty + self.conv_penalty * 0.5 * self.conv_kernel.square().sum()
        return 0.5 * error.square().sum() + penalty

    def extra_loss(self) -> torch.Tensor:
        return self._penalty

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]`` predicted ratings (absolute, not residuals)."""
        unique, inverse = torch.unique(items, return_inverse=True)
        reconstruction = self.reconstruct(unique) if not self.use_global_kernel else self.reconstruct()[unique]
        return reconstruction[inverse, users]

    def score_all(self, users: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """``[B] -> [B, num_items]``."""
        return self.reconstruct().T[users]

    @torch.no_grad()
    def serving_module(self) -> nn.Module:
        """The reconstructed rating matrix as a ``[num_users, num_items]`` lookup table."""
        return FrozenTable(self.reconstruct().T)

    def item_embeddings(self) -> torch.Tensor:
        with torch.no_grad():
            hidden = self.ratings_matrix
            for layer in self.encoder:
                hidden = layer(hidden)[0]
        return hidden
