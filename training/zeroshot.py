"""Zero-shot class text embeddings from a prompt ensemble (what evaluation needs).

The classifier module built on them, for analyses, is ``interp.hooked.head.ZeroShotHead``
(``ZeroShotHead.from_texts`` uses :func:`class_text_embeddings`); this module has no second
one.

The paper's ensemble (and its official code's): OpenAI's 80 ImageNet templates, which
OpenCLIP ships, plus six domain templates. Each prompt is embedded and normalised, the
prompts of a class are averaged and the mean is renormalised, giving one unit vector per
class; an image's logit for a class is the cosine between its normalised image embedding and
that vector (times the logit scale, if asked).

Typical use::

    from training.zeroshot import class_text_embeddings, zero_shot_logits, class_texts
    weights = class_text_embeddings(model, tokenizer, class_texts(folders))   # (C, D)
    logits = zero_shot_logits(model.encode_image(images), weights)             # (B, C)

Templates are ``str.format`` strings with one ``{}`` for the class text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .domains import display_name


def _openai_templates() -> tuple[str, ...]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    # OpenCLIP stores them as lambdas ``lambda c: f"... {c} ..."``; calling one with "{}"
    # turns it back into a format string.
    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


#: OpenAI's 80 ImageNet prompt templates (from ``open_clip.zero_shot_metadata``).
OPENAI_TEMPLATES: tuple[str, ...] = _openai_templates()

#: The six domain templates the paper adds (as in its official code).
DOMAIN_TEMPLATES: tuple[str, ...] = (
    "a clipart of the {}.",
    "a clipart of a {}.",
    "an infograph of the {}.",
    "an infograph of a {}.",
    "a quickdraw of the {}.",
    "a quickdraw of a {}.",
)

#: The paper's ensemble: 86 templates.
DEFAULT_TEMPLATES: tuple[str, ...] = OPENAI_TEMPLATES + DOMAIN_TEMPLATES


def class_texts(class_folders: Sequence[str]) -> list[str]:
    """Class folder names -> the words put into prompts (``traffic_light`` -> ``traffic light``)."""
    return [display_name(c) for c in class_folders]


def _check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    templates = tuple(templates)
    if not templates:
        raise ValueError("no prompt templates given")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}', got {bad[:3]}")
    return templates


@torch.no_grad()
def class_text_embeddings(
    model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    class_texts: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """One unit-norm text embedding per class from a prompt ensemble.

    Args:
        model: an OpenCLIP model (``encode_text``), put in eval mode by the caller.
        tokenizer: OpenCLIP tokenizer, ``list[str] -> (T, context_length)`` ids.
        class_texts: ``C`` class names as they appear in prompts.
        templates: ``K`` format strings with one ``{}``.
        batch_size: prompts per text-tower forward.
        device: where to run the text tower (default: the model's device).

    Returns:
        ``(C, D)`` float32: per class, the mean of its ``K`` normalised prompt embeddings,
        renormalised.
    """
    templates = _check_templates(templates)
    class_texts = list(class_texts)
    if not class_texts:
        raise ValueError("no classes given")
    if device is None:
        device = next(model.parameters()).device
    prompts = [t.format(c) for c in class_texts for t in templates]  # class-major
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[start:start + batch_size]).to(device)
        chunks.append(model.encode_text(tokens, normalize=True).float())
    per_prompt = torch.cat(chunks).view(len(class_texts), len(templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1).cpu()


def zero_shot_logits(
    image_features: torch.Tensor, class_embeddings: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Cosine similarities ``(B, C)`` (times ``scale``) between images and classes.

    Args:
        image_features: ``(B, D)`` image embeddings, normalised here.
        class_embeddings: ``(C, D)`` from :func:`class_text_embeddings` (unit norm).
        scale: multiply by this (e.g. ``model.logit_scale.exp()``); 1 gives cosines.
    """
    image_features = F.normalize(image_features.float(), dim=-1)
    return scale * image_features @ class_embeddings.to(image_features.device).T
