"""The six DomainNet domains, their caption terms, and the paper's held-out classes.

Declared once here; every other module validates domain names through :func:`check_domains`.
"""

from __future__ import annotations

from collections.abc import Iterable

DOMAINS: tuple[str, ...] = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")

#: One letter per domain, as in the paper's mixture names (``lso-cipqrs-...``).
DOMAIN_LETTERS: dict[str, str] = {d: d[0] for d in DOMAINS}

#: The two domain words the paper's captions draw from, besides the neutral terms.
DOMAIN_TERMS: dict[str, tuple[str, str]] = {
    "clipart": ("clipart", "illustration"),
    "infograph": ("infograph", "informational chart"),
    "painting": ("painting", "art"),
    "quickdraw": ("quickdraw", "doodle"),
    "real": ("photo", "snapshot"),
    "sketch": ("sketch", "drawing"),
}

#: Terms that name no domain: the only ones "aligned" captions use.
NEUTRAL_TERMS: tuple[str, str] = ("image", "picture")

#: The paper's fixed held-out classes C2 on real DomainNet, as DomainNet's folder names.
PAPER_HELDOUT_CLASSES: tuple[str, ...] = (
    "aircraft_carrier", "axe", "banana", "barn", "bed", "candle", "lion", "mountain",
    "necklace", "penguin", "pizza", "saxophone", "television", "tractor", "traffic_light",
)


def check_domains(domains: Iterable[str], allowed: Iterable[str] = DOMAINS) -> tuple[str, ...]:
    """Return ``domains`` as a tuple, or raise ``ValueError`` naming any unknown one."""
    allowed = tuple(allowed)
    domains = (domains,) if isinstance(domains, str) else tuple(domains)
    unknown = [d for d in domains if d not in allowed]
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}; expected some of {list(allowed)}")
    return domains


def display_name(class_folder: str) -> str:
    """DomainNet folder name -> words used in captions (``traffic_light`` -> ``traffic light``)."""
    return class_folder.replace("_", " ")
