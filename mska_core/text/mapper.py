"""The VL mapper: a recognition head's features as a pretrained language model's input embeddings.

The MSKA paper's S2T model (``sutwangyan/MSKA``, ``vl_mapper.py`` and ``translation.py``) feeds its
mBART encoder with the fused head's gloss features through a two-layer projection, Linear(H -> d) ->
ReLU -> Linear(d -> d) with ``d`` the LM's ``d_model``. Behind each clip's features it appends a
few learned vectors (the reference appends the embeddings of ``</s>`` and of the source-language
code, which is how an mBART encoder expects its input to end), pads with zeros, and multiplies the
whole sequence by ``sqrt(d_model)``, the scale mBART applies to its own token embeddings.
:class:`VLMapper` does the same, so that the reference's weights give the reference's outputs.
"""

from __future__ import annotations

import torch
from torch import nn


class VLMapper(nn.Module):
    """``memory`` ``[B, K, H]`` of ``lengths`` ``[B]`` entries -> ``(inputs_embeds [B, K', d],
    attention_mask [B, K'])`` with ``K' = max(lengths) + suffix``.

    - ``project`` (Linear H -> d), ReLU, ``out`` (Linear d -> d): each memory entry;
    - ``suffix`` ``[S, d]``: learned vectors placed right after each clip's last entry (none when
      ``S = 0``); :meth:`init_suffix` starts them from the LM's token embeddings;
    - ``scale``: every input vector (suffix included) is multiplied by it; padding is zero and masked.
    """

    def __init__(self, memory_dim: int, d_model: int, *, suffix: int = 0, scale: float = 1.0) -> None:
        super().__init__()
        if suffix < 0:
            raise ValueError(f"the suffix is a number of vectors, 0 or more; got {suffix}")
        self.project = nn.Linear(memory_dim, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.suffix = nn.Parameter(torch.zeros(suffix, d_model))
        self.scale = scale

    @torch.no_grad()
    def init_suffix(self, vectors: torch.Tensor) -> None:
        """Start the suffix from ``vectors`` ``[S, d]`` (rows of the LM's token embedding table)."""
        self.suffix.copy_(vectors.to(self.suffix.dtype))

    def forward(self, memory: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, width = memory.shape[0], int(lengths.max()) if lengths.numel() else 0
        steps = width + self.suffix.shape[0]
        mapped = self.out(torch.relu(self.project(memory[:, :width])))  # [B, K, d]
        positions = torch.arange(steps, device=memory.device)  # [K']
        valid = positions[None, :width] < lengths[:, None]  # [B, K]
        embeds = torch.nn.functional.pad(mapped * valid[..., None].to(mapped.dtype),
                                         (0, 0, 0, steps - width))  # [B, K', d]
        if self.suffix.shape[0]:
            slots = lengths[:, None].long() + torch.arange(self.suffix.shape[0], device=memory.device)  # [B, S]
            suffix = self.suffix.to(embeds.dtype).expand(batch, -1, -1)
            embeds = embeds.scatter(1, slots[..., None].expand(-1, -1, embeds.shape[-1]), suffix)
        mask = (positions[None, :] < (lengths[:, None] + self.suffix.shape[0])).long()  # [B, K']
        return embeds * self.scale, mask
