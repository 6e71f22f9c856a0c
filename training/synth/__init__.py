"""Procedural generator of a DomainNet-format dataset with six visually distinct domains.

Objects are parametric compositions of geometric primitives (:mod:`.objects`), posed per image
(:mod:`.geometry`) and drawn by one renderer per domain (:mod:`.styles`). :func:`generate_dataset`
writes the six domains, their train/test split files, the declared held-out classes and a
natural-style base set with captions (:mod:`.base_captions`) in the layout real DomainNet uses,
so no other code path needs to know whether the images are real.

Example::

    from training.synth import SynthConfig, generate_dataset, contact_sheet
    summary = generate_dataset("data/synth", SynthConfig(image_size=64), workers=2)
    contact_sheet("data/synth", "synth_sheet.png")

A chosen colour and surface pattern on the object's main part (attribute-object data)::

    from training.synth import OBJECT_CLASSES, Look, image_rng, render_real_look
    img, main_mask = render_real_look(OBJECT_CLASSES["cup"], image_rng(0, "real", "cup", 0),
                                      32, Look("blue", "striped"))
"""

from __future__ import annotations

from .base_captions import FORBIDDEN_WORDS, base_caption
from .generate import GENERATOR_VERSION, SynthConfig, contact_sheet, generate_dataset, image_rng
from .objects import (
    ATTRIBUTE_CLASSES,
    BASE_ONLY_CLASSES,
    OBJECT_CLASSES,
    SYNTH_CLASSES,
    SYNTH_HELDOUT_CLASSES,
)
from .styles import NAMED_COLOURS, PATTERNS, RENDERERS, Look, render_base, render_real_look

__all__ = [
    "ATTRIBUTE_CLASSES",
    "BASE_ONLY_CLASSES",
    "FORBIDDEN_WORDS",
    "GENERATOR_VERSION",
    "NAMED_COLOURS",
    "Look",
    "OBJECT_CLASSES",
    "PATTERNS",
    "RENDERERS",
    "SYNTH_CLASSES",
    "SYNTH_HELDOUT_CLASSES",
    "SynthConfig",
    "base_caption",
    "contact_sheet",
    "generate_dataset",
    "image_rng",
    "render_base",
    "render_real_look",
]
