"""Captions for rendition images: the paper's six templates, domain terms and articles.

A caption is ``template.format(a=article, term=term, cls=class_text)``; the term is drawn from
the neutral terms plus the domain's two words (or, for "aligned" captions, from the neutral
terms only), and the final full stop is dropped half the time. The article is the paper's per
term (:data:`ARTICLES`): "art" takes none ("art of a lion.", "a lion depicted in art").

Each image's caption is drawn from its own seeded stream, ``seeded_rng(seed, "caption", key,
style)`` with ``key`` the image's split-file entry (``<domain>/<class>/<file>``): a function
of (image, seed, style) only, so an image has the same caption in every mixture, as in the
paper's code, which writes one caption file per split once.
"""

from __future__ import annotations

from collections.abc import Sequence

from .domains import DOMAIN_TERMS, NEUTRAL_TERMS, check_domains
from .util.seeding import seeded_rng
from .util.validate import check_choice

TEMPLATES: tuple[str, ...] = (
    "{a} {term} of a {cls}.",
    "a {cls} {term}.",
    "{a} {term} depicting a {cls}.",
    "a {cls} depicted in {a} {term}.",
    "{a} {term} showing a {cls}.",
    "a {cls} is visible in {a} {term}.",
)
CAPTION_STYLES: tuple[str, ...] = ("domain", "aligned")

#: The paper's article per caption term ("" for none: "art of a lion.").
ARTICLES: dict[str, str] = {
    "image": "an", "picture": "a", "clipart": "a", "illustration": "an", "infograph": "an",
    "informational chart": "an", "painting": "a", "art": "", "quickdraw": "a", "doodle": "a",
    "photo": "a", "snapshot": "a", "sketch": "a", "drawing": "a",
}


def article(word: str) -> str:
    """Indefinite article for a caption term: the paper's (:data:`ARTICLES`), else by the
    first letter (``an image``, ``a photo``); ``""`` for ``art``."""
    if word in ARTICLES:
        return ARTICLES[word]
    return "an" if word[:1].lower() in "aeiou" else "a"


def caption_terms(domain: str, style: str = "domain") -> tuple[str, ...]:
    """Terms a caption of ``domain`` may use: neutral ones, plus the domain's unless aligned."""
    check_domains([domain])
    if style not in CAPTION_STYLES:
        raise ValueError(f"unknown caption style {style!r}; expected one of {list(CAPTION_STYLES)}")
    return NEUTRAL_TERMS if style == "aligned" else NEUTRAL_TERMS + DOMAIN_TERMS[domain]


def fill_template(template: str, term: str, class_text: str) -> str:
    """``template`` with the term, its article (none for ``art``) and the class text."""
    a = article(term)
    if not a:
        template = template.replace("{a} ", "")
    return template.format(a=a, term=term, cls=class_text)


def caption(class_text: str, domain: str, key: str, seed: int, style: str = "domain") -> str:
    """The caption of one image: template, term and full stop drawn from the stream
    ``(seed, "caption", key, style)``; ``key`` names the image (its split-file entry)."""
    rng = seeded_rng(seed, "caption", key, style)
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    options = caption_terms(domain, style)
    term = options[int(rng.random() * len(options))]
    keep_stop = rng.random() >= 0.5
    text = fill_template(template, term, class_text)
    return text if keep_stop else text[:-1]


def make_captions(
    class_texts: Sequence[str],
    domains: Sequence[str],
    keys: Sequence[str],
    seed: int,
    style: str = "domain",
) -> list[str]:
    """One caption per row of (class text, domain, image key), each by :func:`caption`:
    independent of the other rows, so the same image gets the same caption in any mixture."""
    if not len(class_texts) == len(domains) == len(keys):
        raise ValueError(f"{len(class_texts)} class texts, {len(domains)} domains and "
                         f"{len(keys)} keys: need one of each per row")
    check_choice("style", style, CAPTION_STYLES)
    check_domains(sorted(set(domains)))
    return [caption(c, d, k, seed, style)
            for c, d, k in zip(class_texts, domains, keys, strict=True)]
