"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over each user's time-ordered history."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pentad_core.errors import ConfigError
from pentad_recsys.models.sequential import SequentialRecModel
from pentad_recsys.registry import MODELS


class CausalSelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + FFN(LN(x))``.

    Args:
        dim: Model width.
        heads: Attention heads (``dim`` must be divisible by it).
        dropout: Dropout on attention weights and on both residual branches.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim {dim} is not divisible by heads {heads}.")
        self.heads, self.dropout = heads, dropout
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]``, ``allowed [B, L, L]`` bool (query may attend key) -> ``[B, L, D]``."""
        b, length, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed.unsqueeze(1), dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


@MODELS.register(
    "sasrec",
    description="SASRec: causal self-attention over the time-ordered history (Kang & McAuley 2018)",
    tasks=("ranking",),
    inputs="sequence",
)
class SASRec(SequentialRecModel):
    """Self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

    Item plus learned position embeddings go through ``layers`` causal transformer blocks; a
    position attends to itself and to earlier non-empty positions only.

    Args:
        num_users: Number of users.
        num_items: Number of items.
        dim: Embedding size.
        max_len: Items of history per user.
        layers: Transformer blocks.
        heads: Attention heads.
        dropout: Dropout on embeddings, attention and residual branches.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        max_len: int = 50,
        layers: int = 2,
        heads: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(num_users, num_items, dim, max_len)
        self.position_embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.position_embedding.weight, 0.0, 0.02)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(CausalSelfAttentionBlock(dim, heads, dropout) for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` ids -> ``[B, L, D]`` causal states."""
        length = sequences.shape[1]
        present = sequences >= 0
        x = self.embed(sequences) * math.sqrt(self.dim) + self.position_embedding.weight[-length:]
        x = self.input_dropout(x) * present.unsqueeze(-1).to(x.dtype)
        causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
        # a key is visible when it is not later and not empty; the diagonal keeps every row non-empty
        allowed = (causal & present.unsqueeze(1)) | torch.eye(length, dtype=torch.bool, device=sequences.device)
        for block in self.blocks:
            x = block(x, allowed)
        return self.final_norm(x)
