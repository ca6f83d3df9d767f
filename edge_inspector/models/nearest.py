"""Nearest-neighbour search of query features against a memory bank, as matmuls (exportable to ONNX).

Shared by the feature-memory detector's patch memory and its region branch. The bank is stored centred
on its mean (``memory_t`` (D, M) and ``memory_sq`` (M,) of the centred entries; the caller subtracts the
same centre from the queries): ||a||^2 - 2ab + ||b||^2 cancels badly in float32 when the norms are large,
and torch and ONNX Runtime sum in different orders, so centring keeps the exported distances within
tolerance of the torch ones.
"""

from __future__ import annotations

import torch


def nearest_squared(q: torch.Tensor, memory_t: torch.Tensor, memory_sq: torch.Tensor,
                    excluded: torch.Tensor | None = None) -> torch.Tensor:
    """Centred queries (N, P, D) -> (N, P) squared distance to the nearest bank entry.

    ||q - m||^2 = ||m||^2 - 2 q.m + ||q||^2; the last term is the same for every entry, so it is added
    after the minimum over the bank: one (P x M) sum fewer per image. ``excluded`` (N, M) bool marks
    entries image n may not match (leave-one-out scoring of training images at fit time; never in the
    exported graph)."""
    partial = memory_sq - 2.0 * (q @ memory_t)  # (N, P, M)
    if excluded is not None:
        partial = partial.masked_fill(excluded[:, None, :], float("inf"))
    return partial.min(dim=-1).values + (q * q).sum(-1)
