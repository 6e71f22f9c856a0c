"""Where to intervene: a site plus an optional position, head and set of channels.

A :class:`PatchUnit` names the part of one site's activation that a patch or an ablation
replaces. Which axis is "position", "head" or "channel" follows the site's layout (see
:data:`interp.hooked.base.LAYOUTS`; shapes below are without the batch axis):

==============  ===============  ==============  ============  ==========================
layout          shape            position axis   head axis     channel (feature) axis
==============  ===============  ==============  ============  ==========================
tokens          (T, D)           T (0 = class)   --            D
sequence        (L, D)           L               --            D
heads           (T, H, d)        T               H             d
head_result     (T, H, D)        T               H             D
pattern         (H, Tq, Tk)      Tq (query)      H             Tk (key)
spatial         (C, Hs, Ws)      Hs*Ws, row-major  --          C
vector          (D,)             --              --            D
head_vector     (H, d)           --              H             d
head_weights    (H, T)           T               H             --
==============  ===============  ==============  ============  ==========================

A field left ``None`` means "all of that axis"; ``PatchUnit(site)`` is the whole site.
:func:`unit_index` turns a unit into an index tuple for the batched activation
``act[index]`` (batch axis first, always fully selected), validating the unit against the
activation's shape with errors that name the bad value and the allowed range.
:func:`sweep_units` builds the units of a sweep (every position, head or channel group of
some sites); :func:`site_shapes` measures per-example activation shapes with one probe forward.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from interp.hooked.base import HookedImageTower, in_eval_mode
from training.util.validate import check_choice

#: Granularities of a sweep (see :func:`sweep_units`).
GRANULARITIES: tuple[str, ...] = ("site", "position", "head", "channel_group")

#: Per layout: (position axis, head axis, channel axis), counted without the batch axis;
#: ``"spatial"`` positions are the flattened (row, column) grid over axes 1 and 2.
_AXES: dict[str, tuple[int | str | None, int | None, int | None]] = {
    "tokens": (0, None, 1),
    "sequence": (0, None, 1),
    "heads": (0, 1, 2),
    "head_result": (0, 1, 2),
    "pattern": (1, 0, 2),
    "spatial": ("grid", None, 0),
    "vector": (None, None, 0),
    "head_vector": (None, 0, 1),
    "head_weights": (1, 0, None),
}


@dataclass(frozen=True)
class PatchUnit:
    """One patchable part of a site: ``site`` plus optional ``position``, ``head``, ``channels``.

    ``head``: one head index, or a tuple of heads (e.g. the heads outside a circuit);
    ``channels``: indices along the site's channel axis (a channel group, or the features
    outside a circuit). ``None`` = all of that axis.
    """

    site: str
    position: int | None = None
    head: int | tuple[int, ...] | None = None
    channels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if isinstance(self.head, Iterable) and not isinstance(self.head, str | bytes):
            object.__setattr__(self, "head", tuple(int(h) for h in self.head))

    @property
    def channel_range(self) -> tuple[int | None, int | None]:
        """``(first, last + 1)`` of the channels (``(None, None)`` for all), for tables."""
        if self.channels is None or not self.channels:
            return None, None
        return min(self.channels), max(self.channels) + 1


#: Which axis a circuit's units live on, per layout (as ``interp.circuits.attribution``): heads for
#: per-head layouts, channels (features) otherwise.
CIRCUIT_AXIS: dict[str, str] = {
    "tokens": "channels", "sequence": "channels", "heads": "head", "head_result": "head",
    "spatial": "channels", "vector": "channels", "head_vector": "head",
}


def _layout(model: HookedImageTower, site: str) -> str:
    layout = model.site_layout(site)  # raises UnknownSiteError for a bad site
    if layout not in _AXES:
        raise ValueError(f"site {site!r} has layout {layout!r}, which has no unit axes defined")
    return layout


def _check_in_range(what: str, value: int, size: int, unit: PatchUnit, layout: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} of {unit} must be an int, got a bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} of {unit} must be an int, got {type(value).__name__}") from None
    if not 0 <= value < size:
        raise IndexError(
            f"{what} {value} out of range for site {unit.site!r} (layout {layout!r}): "
            f"allowed 0..{size - 1}"
        )
    return int(value)


def _index_set(
    what: str, values: tuple[int, ...], size: int, unit: PatchUnit, layout: str
) -> slice | torch.Tensor:
    """A set of indices along one axis: a slice if contiguous and increasing, else a tensor."""
    if not values:
        raise ValueError(f"{unit} selects no {what}; give at least one or None for all")
    bad = [v for v in values if not 0 <= v < size]
    if bad:
        raise IndexError(
            f"{what} {bad[:5]} out of range for site {unit.site!r} (layout {layout!r}): "
            f"allowed 0..{size - 1}"
        )
    first, last = values[0], values[-1]
    if list(values) == list(range(first, last + 1)):
        return slice(first, last + 1)
    return torch.tensor(values, dtype=torch.long)


def unit_index(unit: PatchUnit, layout: str, shape: Sequence[int]) -> tuple[Any, ...]:
    """Index tuple selecting ``unit`` in a batched activation ``(B, *shape)`` of ``layout``.

    ``shape`` is the per-example shape (no batch axis). The batch axis is always fully
    selected, so ``act[index] = other[index]`` copies the unit for every example. Raises
    ``ValueError`` for a field the layout does not have and ``IndexError`` (naming the
    allowed range) for an out-of-range position, head or channel.
    """
    check_choice("layout", layout, _AXES)
    pos_axis, head_axis, chan_axis = _AXES[layout]
    index: list[Any] = [slice(None)] * len(shape)
    if unit.position is not None:
        if pos_axis is None:
            raise ValueError(
                f"site {unit.site!r} (layout {layout!r}, one vector per head or image) has no "
                "positions; use position=None"
            )
        if pos_axis == "grid":
            rows, cols = int(shape[1]), int(shape[2])
            p = _check_in_range("position", unit.position, rows * cols, unit, layout)
            index[1], index[2] = p // cols, p % cols
        else:
            index[pos_axis] = _check_in_range("position", unit.position, shape[pos_axis], unit, layout)
    if unit.head is not None:
        if head_axis is None:
            raise ValueError(
                f"site {unit.site!r} (layout {layout!r}) has no head axis; per-head sites are "
                "attention q/k/v/z/result/pattern hooks (e.g. 'blocks.0.attn.hook_z')"
            )
        if isinstance(unit.head, tuple):
            index[head_axis] = _index_set("head(s)", unit.head, shape[head_axis], unit, layout)
        else:
            index[head_axis] = _check_in_range("head", unit.head, shape[head_axis], unit, layout)
    if unit.channels is not None:
        if chan_axis is None:
            raise ValueError(f"site {unit.site!r} (layout {layout!r}) has no channel axis")
        index[chan_axis] = _index_set("channel(s)", unit.channels, shape[chan_axis], unit, layout)
    if head_axis is not None and chan_axis is not None:
        heads, channels = index[head_axis], index[chan_axis]
        if isinstance(heads, torch.Tensor) and isinstance(channels, torch.Tensor):
            # two index sets on adjacent axes select their cross product (numpy's ix_)
            index[head_axis] = heads[:, None]
    return (slice(None), *index)


def n_positions(layout: str, shape: Sequence[int]) -> int:
    """Number of positions of a site (0 if its layout has none)."""
    pos_axis = _AXES[layout][0]
    if pos_axis is None:
        return 0
    if pos_axis == "grid":
        return int(shape[1]) * int(shape[2])
    return int(shape[pos_axis])


def n_heads(layout: str, shape: Sequence[int]) -> int:
    """Number of heads of a site (0 if its layout has none)."""
    head_axis = _AXES[layout][1]
    return 0 if head_axis is None else int(shape[head_axis])


def n_channels(layout: str, shape: Sequence[int]) -> int:
    """Number of channels (features) of a site (0 if its layout has none)."""
    chan_axis = _AXES[layout][2]
    return 0 if chan_axis is None else int(shape[chan_axis])


@in_eval_mode
def site_shapes(
    model: HookedImageTower, sites: Iterable[str] | None = None
) -> dict[str, tuple[int, ...]]:
    """Per-example activation shape of each site (default: all), from one probe forward.

    The probe is a single zero image at the model's input size, run without gradients in
    eval mode (so BatchNorm statistics are untouched; the model's mode is restored).
    """
    names = model.site_names() if sites is None else model.check_sites(list(sites))
    shapes: dict[str, tuple[int, ...]] = {}

    def record(tensor: torch.Tensor, hook: Any) -> None:
        shapes[hook.name] = tuple(tensor.shape[1:])

    height, width = model.cfg.image_size
    param = next(model.parameters())
    probe = torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype)
    with torch.no_grad(), model.hooks(fwd_hooks=[(n, record) for n in names]):
        model(probe)
    missing = [n for n in names if n not in shapes]
    if missing:
        raise RuntimeError(f"site(s) {missing} were not reached by the forward pass")
    return {n: shapes[n] for n in names}


def channel_groups(n: int, n_groups: int) -> list[tuple[int, ...]]:
    """Split channels ``0..n-1`` into ``min(n_groups, n)`` contiguous, near-equal groups."""
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    if n < 1:
        raise ValueError("a site without channels cannot be split into channel groups")
    bounds = [round(i * n / min(n_groups, n)) for i in range(min(n_groups, n) + 1)]
    return [tuple(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def sweep_units(
    model: HookedImageTower,
    sites: Sequence[str],
    granularity: str = "site",
    n_groups: int = 8,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> list[PatchUnit]:
    """The units of a sweep over ``sites``, in site order then index order.

    ``granularity``: ``"site"`` (one unit per site), ``"position"`` (every position of each
    site), ``"head"`` (every head), ``"channel_group"`` (``n_groups`` contiguous channel
    groups). A site whose layout lacks the axis raises ``ValueError`` naming it.
    """
    check_choice("granularity", granularity, GRANULARITIES)
    sites = model.check_sites(list(sites))
    if not sites:
        raise ValueError("no sites given")
    if granularity == "site":
        return [PatchUnit(s) for s in sites]
    shapes = site_shapes(model, sites) if shapes is None else shapes
    counter = {"position": n_positions, "head": n_heads, "channel_group": n_channels}[granularity]
    units: list[PatchUnit] = []
    for site in sites:
        layout = _layout(model, site)
        count = counter(layout, shapes[site])
        if count == 0:
            raise ValueError(
                f"site {site!r} (layout {layout!r}) has no {granularity.replace('_group', '')} "
                f"axis; granularity {granularity!r} needs sites of layouts "
                f"{[k for k in _AXES if counter(k, (2, 2, 2)) > 0]}"
            )
        if granularity == "position":
            units += [PatchUnit(site, position=p) for p in range(count)]
        elif granularity == "head":
            units += [PatchUnit(site, head=h) for h in range(count)]
        else:
            units += [PatchUnit(site, channels=g) for g in channel_groups(count, n_groups)]
    return units


_VIT_SITE = re.compile(r"^blocks\.(\d+)\.(?:(attn|mlp)\.)?hook_(\w+)$")
_RESNET_SITE = re.compile(r"^layer(\d)\.(\d+)\.hook_(\w+)$")


def site_label(model: HookedImageTower, site: str) -> str:
    """Short label of a site for plots: ``model.layers()``'s label if it has one, else a
    compact form (``blocks.2.hook_mlp_out`` -> ``b2.mlp_out``, ``layer3.1.hook_conv3`` ->
    ``L3.1.conv3``)."""
    for layer in model.layers():
        if layer.name == site:
            return layer.label
    match = _VIT_SITE.match(site)
    if match:
        block, sub, name = match.groups()
        return f"b{block}.{sub + '.' if sub == 'attn' else ''}{name}"
    match = _RESNET_SITE.match(site)
    if match:
        stage, block, name = match.groups()
        return f"L{stage}.{block}.{name}"
    return site.replace("hook_", "")


def describe_units(units: Sequence[PatchUnit], site_labels: Mapping[str, str]) -> dict[str, Any]:
    """Table columns for an intervention: site, layer label, position, head, channel range
    (``channel_start``/``channel_stop`` span the channels, ``n_channels`` counts them).

    A multi-unit intervention gets its sites joined by ``+`` and NaN for the index columns
    that differ between units.
    """
    def common(values: list[Any]) -> Any:
        return values[0] if all(v == values[0] for v in values) else np.nan

    channel = [u.channel_range for u in units]
    return {
        "site": "+".join(dict.fromkeys(u.site for u in units)),
        "layer": "+".join(dict.fromkeys(site_labels.get(u.site, u.site) for u in units)),
        "position": _na(common([u.position for u in units])),
        "head": _na(common([u.head if not isinstance(u.head, tuple) else None for u in units])),
        "channel_start": _na(common([c[0] for c in channel])),
        "channel_stop": _na(common([c[1] for c in channel])),
        "n_channels": _na(common([None if u.channels is None else len(u.channels) for u in units])),
        "n_units": len(units),
        "granularity": unit_granularity(units),
    }


def unit_granularity(units: Sequence[PatchUnit]) -> str:
    """Granularity of an intervention for tables: ``site``, ``position``, ``head``,
    ``channel_group`` (the finest field set on its units), or ``mixed``."""
    kinds = set()
    for u in units:
        if u.position is not None and u.head is None and u.channels is None:
            kinds.add("position")
        elif u.head is not None and u.position is None and u.channels is None:
            kinds.add("head")
        elif u.channels is not None and u.position is None and u.head is None:
            kinds.add("channel_group")
        elif u.position is None and u.head is None and u.channels is None:
            kinds.add("site")
        else:
            kinds.add("mixed")
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _na(value: Any) -> Any:
    return np.nan if value is None else value
