"""Zero-shot classification head: image embeddings -> class logits.

The head holds one unit-norm text embedding per class ``(C, E)`` (a prompt ensemble: each
prompt's embedding normalised, averaged over prompts, renormalised) and returns
``logit_scale * cos(image_embedding, class_embedding)`` ``(B, C)``. With ``logit_scale=1``
(the default) the logit of a class is the plain cosine similarity, the paper's circuit metric
("logit of the true class, cosine to the class text embedding"); with CLIP's learned
temperature (``logit_scale=model.logit_scale.exp()``) the logits are the ones CLIP's
contrastive loss and zero-shot accuracy use. Argmax, hence accuracy, is the same either way.

The prompt-ensemble logic itself lives in ``training.zeroshot`` (used by
:meth:`ZeroShotHead.from_texts`); this module does not duplicate it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from interp.hooked.base import hook_point


class ZeroShotHead(nn.Module):
    """Cosine-similarity classifier over fixed class text embeddings.

    ``class_embeddings``: ``(C, E)`` (normalised here); ``class_names``: ``C`` names (default
    ``"0".."C-1"``); ``logit_scale``: multiplier of the cosine (1.0 = plain cosine).
    Forward: image embeddings ``(B, E)`` -> logits ``(B, C)``; the hook ``hook_logits`` sees
    the logits (``head.hook_logits`` on a hooked tower).
    """

    def __init__(
        self,
        class_embeddings: Tensor,
        class_names: Sequence[str] | None = None,
        logit_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if class_embeddings.ndim != 2 or class_embeddings.shape[0] == 0:
            raise ValueError(
                f"class_embeddings must be (C, E) with C >= 1, got shape {tuple(class_embeddings.shape)}"
            )
        names = (
            tuple(str(i) for i in range(class_embeddings.shape[0]))
            if class_names is None
            else tuple(class_names)
        )
        if len(names) != class_embeddings.shape[0]:
            raise ValueError(
                f"{len(names)} class names for {class_embeddings.shape[0]} class embeddings"
            )
        self.class_names = names
        self.embed_dim = int(class_embeddings.shape[1])
        self.register_buffer(
            "class_embeddings", F.normalize(class_embeddings.detach().float(), dim=-1)
        )
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))
        self.hook_logits = hook_point("vector")

    def forward(self, image_embed: Tensor) -> Tensor:
        """``image_embed``: ``(B, E)`` -> logits ``(B, C)``."""
        weights = self.class_embeddings.to(image_embed.dtype)
        logits = self.logit_scale * F.normalize(image_embed, dim=-1) @ weights.T
        return self.hook_logits(logits)

    def class_index(self, names: Sequence[str]) -> list[int]:
        """Indices of ``names`` among the head's classes (``ValueError`` for unknown ones)."""
        lookup = {name: i for i, name in enumerate(self.class_names)}
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise ValueError(f"unknown class(es) {unknown}; head classes: {list(self.class_names)}")
        return [lookup[n] for n in names]

    @classmethod
    def from_texts(
        cls,
        model: nn.Module,
        tokenizer: Any,
        class_names: Sequence[str],
        templates: Sequence[str] | None = None,
        use_model_logit_scale: bool = False,
    ) -> ZeroShotHead:
        """Build the head from an OpenCLIP model's text tower with ``training.zeroshot``.

        ``class_names``: class folder names (``traffic_light``; turned into prompt words by
        ``training.zeroshot.class_texts``); ``templates``: default the paper's ensemble
        (OpenAI's 80 ImageNet templates + 6 domain ones); ``tokenizer``: e.g.
        ``training.models.tokenizer_for(model_config)``. The model should be in eval mode.
        """
        from training.zeroshot import DEFAULT_TEMPLATES, class_text_embeddings, class_texts

        embeddings = class_text_embeddings(
            model, tokenizer, class_texts(list(class_names)),
            DEFAULT_TEMPLATES if templates is None else templates,
        )
        scale = float(model.logit_scale.exp()) if use_model_logit_scale else 1.0
        return cls(embeddings, class_names=class_names, logit_scale=scale)
