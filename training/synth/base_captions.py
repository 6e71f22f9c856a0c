"""Natural captions for the generated base set (the stand-in for ImageNet-Captions).

Captions describe what was rendered (:class:`~training.synth.styles.BaseScene`: count, colour,
size, position, background, close-up) in varied sentence forms. They never name a domain:
:data:`FORBIDDEN_WORDS` (the words of ``DOMAIN_TERMS`` and ``NEUTRAL_TERMS`` plus other words
for renditions) occur in no caption, not even inside another word, so that the base set
teaches class names from natural images only.
"""

from __future__ import annotations

import numpy as np

from ..domains import DOMAIN_TERMS, NEUTRAL_TERMS, display_name
from .styles import SCENES, BaseScene

#: Words that must never occur in a base caption (checked as substrings, lower case).
FORBIDDEN_WORDS: tuple[str, ...] = tuple(sorted(
    {w for terms in DOMAIN_TERMS.values() for t in terms for w in t.split()}
    | set(NEUTRAL_TERMS)
    | {"photo", "sketch", "drawing", "painting", "art", "clipart", "illustration", "doodle",
       "quickdraw", "infograph", "chart", "snapshot", "image", "picture", "render", "cartoon"}
))

_NUMBERS = {2: "two", 3: "three"}
_IRREGULAR_PLURALS = {"fish": "fish", "cactus": "cacti"}
#: Nouns counted in pairs: "a pair of red eyeglasses", "two pairs of eyeglasses".
_PAIR_NOUNS = ("eyeglasses",)


def plural(noun: str) -> str:
    """English plural of a class display name (``traffic light`` -> ``traffic lights``)."""
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun in _PAIR_NOUNS:
        return noun
    head, _, last = noun.rpartition(" ")
    if last.endswith(("s", "sh", "ch", "x")):
        last = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last = last + "s"
    return f"{head} {last}".strip()


def article(word: str) -> str:
    """``a`` or ``an`` for the following word."""
    return "an" if word[:1] in "aeiou" else "a"


def noun_phrase(name: str, adjectives: list[str | None], count: int = 1) -> str:
    """``a small red car``, ``two red cars``, ``a pair of red eyeglasses``."""
    adj = " ".join(a for a in adjectives if a)
    if count == 1:
        if name in _PAIR_NOUNS:
            return " ".join(w for w in ("a pair of", adj, name) if w)
        body = f"{adj} {name}".strip()
        return f"{article(body)} {body}"
    num = _NUMBERS[count]
    if name in _PAIR_NOUNS:
        return " ".join(w for w in (num, "pairs of", adj, name) if w)
    return " ".join(w for w in (num, adj, plural(name)) if w)


def base_caption(scene: BaseScene, rng: np.random.Generator) -> str:
    """A varied natural caption for one base image, deterministic given ``rng``."""
    name = display_name(scene.cls)
    bgs = SCENES[scene.scene]
    bg = bgs[int(rng.integers(len(bgs)))]
    colour = scene.colour
    pair = f"{colour} and {scene.accent}" if scene.accent else colour
    if scene.closeup:
        options = [
            f"a close-up of {noun_phrase(name, [colour])}",
            f"{noun_phrase(name, [pair])} seen up close",
            f"a close view of {noun_phrase(name, [])}",
            f"close-up of {noun_phrase(name, [colour])} {bg}",
            f"{noun_phrase(name, [])} filling the frame",
        ]
    elif scene.count > 1:
        n = scene.count
        group = "a pair of" if n == 2 else "a group of three"
        options = [
            f"{noun_phrase(name, [colour], n)} {bg}",
            f"{noun_phrase(name, [], n)} {bg}",
            f"{noun_phrase(name, [], n)} side by side",
            f"{noun_phrase(name, [pair], n)}",
            f"a row of {noun_phrase(name, [], n)} {bg}",
            f"{group} {colour} {plural(name)}" if name not in _PAIR_NOUNS
            else f"{noun_phrase(name, [colour], n)} next to each other",
        ]
    else:
        pos = scene.position
        size = scene.size_word
        options = [
            f"{noun_phrase(name, [size, colour])} {bg}",
            f"{noun_phrase(name, [colour])} {bg}",
            f"there is {noun_phrase(name, [size])} {bg}",
            f"{noun_phrase(name, [pair])}",
            f"{noun_phrase(name, [size, pair])} {pos or bg}",
            f"{noun_phrase(name, [])} {bg}" + (f", {pos}" if pos else ""),
            f"{noun_phrase(name, [colour])} " + (pos or "in the middle"),
        ]
    text = options[int(rng.integers(len(options)))]
    text = " ".join(text.split())
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.5:
        text += "."
    return text
