"""Captions for rendition images: the paper's six templates and domain terms.

A caption is ``template.format(a=article, term=term, cls=class_text)``; the term is drawn from
the neutral terms plus the domain's two words (or, for "aligned" captions, from the neutral
terms only), and the final full stop is dropped half the time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .domains import DOMAIN_TERMS, NEUTRAL_TERMS, check_domains

TEMPLATES: tuple[str, ...] = (
    "{a} {term} of a {cls}.",
    "a {cls} {term}.",
    "{a} {term} depicting a {cls}.",
    "a {cls} depicted in {a} {term}.",
    "{a} {term} showing a {cls}.",
    "a {cls} is visible in {a} {term}.",
)
CAPTION_STYLES: tuple[str, ...] = ("domain", "aligned")


def article(word: str) -> str:
    """Indefinite article for ``word`` by its first letter (``an image``, ``a photo``)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def caption_terms(domain: str, style: str = "domain") -> tuple[str, ...]:
    """Terms a caption of ``domain`` may use: neutral ones, plus the domain's unless aligned."""
    check_domains([domain])
    if style not in CAPTION_STYLES:
        raise ValueError(f"unknown caption style {style!r}; expected one of {list(CAPTION_STYLES)}")
    return NEUTRAL_TERMS if style == "aligned" else NEUTRAL_TERMS + DOMAIN_TERMS[domain]


def make_captions(
    class_texts: Sequence[str],
    domains: Sequence[str],
    rng: np.random.Generator,
    style: str = "domain",
) -> list[str]:
    """One caption per row of (class text, domain); draws template, term and full stop from ``rng``.

    Deterministic for the state of ``rng``: three draws per row, made in bulk, so the result
    does not depend on how rows are grouped.
    """
    if len(class_texts) != len(domains):
        raise ValueError(f"{len(class_texts)} class texts but {len(domains)} domains")
    n = len(class_texts)
    template_idx = rng.integers(len(TEMPLATES), size=n)
    term_draw = rng.random(n)
    keep_stop = rng.random(n) >= 0.5
    terms = {d: caption_terms(d, style) for d in set(domains)}
    captions = []
    for cls, dom, t, u, stop in zip(
        class_texts, domains, template_idx, term_draw, keep_stop, strict=True
    ):
        options = terms[dom]
        term = options[int(u * len(options))]
        text = TEMPLATES[t].format(a=article(term), term=term, cls=cls)
        captions.append(text if stop else text[:-1])
    return captions
