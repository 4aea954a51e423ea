"""Query association across windows: Hungarian matching on query embeddings (scipy).

A "track" is a query slot: after each window is permuted onto the previous one, slot ``q`` of
every window belongs to the same object. Class and objectness logits are averaged over windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

#: Zero-shot path (OVFormerVideo): the reference becomes 0.7 * new + 0.3 * old after each frame.
MEMORY_MOMENTUM = 0.7


def match_queries(reference: Tensor, current: Tensor) -> np.ndarray:
    """Permutation aligning ``current`` queries to ``reference`` ones.

    Cost = 1 - cosine similarity, reference queries on the rows, current on the columns.

    Args:
        reference: ``[Q, D]`` embeddings of the tracks so far.
        current: ``[Q, D]`` embeddings of the new window.

    Returns:
        int64 ``[Q]``: ``current[perm[q]]`` continues track ``q``.
    """
    ref = reference / reference.norm(dim=1, keepdim=True)
    cur = current / current.norm(dim=1, keepdim=True)
    cost = 1 - (cur @ ref.T)  # [cur, ref], as the official code builds it before transposing
    _, cols = linear_sum_assignment(cost.T.float().cpu().numpy())
    return cols.astype(np.int64)


@dataclass
class QueryTracks:
    """Running state of the tracks of one video.

    Attributes:
        reference_update: "last" (VideoOVFormer: the last permuted window's embeddings) or
            "momentum" (OVFormerVideo: exponential memory of the permuted embeddings).
    """

    reference_update: Literal["last", "momentum"] = "last"
    reference: Tensor | None = None
    class_logit_sum: Tensor | None = None
    object_logit_sum: Tensor | None = None
    num_windows: int = 0
    permutations: list[np.ndarray] = field(default_factory=list)

    def update(self, query_embeds: Tensor, class_logits: Tensor, object_logits: Tensor) -> np.ndarray:
        """Associate one window's queries with the tracks and accumulate its logits.

        Args:
            query_embeds: ``[Q, D]``; class_logits ``[Q, C + 1]``; object_logits ``[Q, 2]``.

        Returns:
            the permutation applied to this window (identity for the first one).
        """
        if self.reference is None:
            perm = np.arange(query_embeds.shape[0], dtype=np.int64)
        else:
            perm = match_queries(self.reference, query_embeds)
            self.permutations.append(perm)
        index = torch.from_numpy(perm).to(query_embeds.device)
        embeds = query_embeds[index]
        if self.reference is None or self.reference_update == "last":
            self.reference = embeds
        else:
            self.reference = MEMORY_MOMENTUM * embeds + (1 - MEMORY_MOMENTUM) * self.reference
        cls, obj = class_logits[index], object_logits[index]
        self.class_logit_sum = cls.clone() if self.class_logit_sum is None else self.class_logit_sum + cls
        self.object_logit_sum = obj.clone() if self.object_logit_sum is None else self.object_logit_sum + obj
        self.num_windows += 1
        return perm

    def mean_logits(self) -> tuple[Tensor, Tensor]:
        """Track logits averaged over windows (each window weighs 1): ``[Q, C + 1]``, ``[Q, 2]``."""
        if self.class_logit_sum is None or self.object_logit_sum is None:
            raise ValueError("no window has been added")
        return self.class_logit_sum / self.num_windows, self.object_logit_sum / self.num_windows
