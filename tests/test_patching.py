"""Activation patching: identities, hand-written hooks, TransformerLens, cross-domain, CLI.

Every batched result is checked against an independent computation: a hand-written hook
run one patch at a time, TransformerLens' ``generic_activation_patch``, or an identity that
must hold exactly (self-patching, full patching). Models are tiny and in float64, so
"equal" means equal to ~1e-10.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from patch_helpers import N_CLASSES, hook_count, make_images

from interp.hooked.base import UnknownSiteError
from interp.interventions.intervene import residual_checkpoints, run_interventions
from interp.interventions.patching import (
    activation_patching,
    class_means,
    component_sites,
    cross_domain_patching,
    pair_by_class,
    results_frame,
)
from interp.interventions.units import PatchUnit, channel_groups, sweep_units
from interp.metrics import (
    bootstrap_ci,
    bootstrap_recovery,
    logit_diff,
    normalized_recovery,
    recovery_of_means,
    true_class_logit,
    true_class_prob,
)

B = 4


@pytest.fixture(scope="module")
def batch():
    """clean, corrupted images (B, 3, 32, 32) and labels (B,)."""
    labels = torch.tensor([0, 1, 2, 3])
    return make_images(B, 1), make_images(B, 2), labels


def _cache(model, images, sites):
    with torch.no_grad():
        _, cache = model.run_with_cache(images, names_filter=list(sites))
    return {s: cache[s].clone() for s in sites}


def _metric(model, images, labels, hooks=()):
    with torch.no_grad():
        return logit_diff(model.run_with_hooks(images, fwd_hooks=list(hooks)), labels)


def _patch_sites(model):
    """Every site before the head whose activation carries the batch (all of them)."""
    return [s for s in model.site_names() if not s.startswith("head.")]


# --------------------------------------------------------------------------- metrics


def test_metrics_by_hand():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 0.0]])
    labels = torch.tensor([2, 0])
    assert true_class_logit(logits, labels).tolist() == [2.0, 0.5]
    assert logit_diff(logits, labels).tolist() == [-1.0, 0.5]
    p = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    assert torch.allclose(true_class_prob(logits, labels), p[[0, 1], [2, 0]])
    with pytest.raises(ValueError, match=r"label\(s\) \[3\] out of range.*0\.\.2"):
        logit_diff(logits, torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="labels must be"):
        logit_diff(logits, torch.tensor([0]))


def test_recovery_and_bootstrap_against_numpy():
    rng = np.random.default_rng(3)
    clean, corrupt = rng.normal(2, 1, 30), rng.normal(0, 1, 30)
    patched = corrupt + 0.4 * (clean - corrupt)
    assert np.allclose(normalized_recovery(patched, corrupt, clean), 0.4)
    assert recovery_of_means(patched, corrupt, clean) == pytest.approx(0.4)
    assert np.isnan(normalized_recovery([1.0], [1.0], [1.0])[0])
    values = rng.normal(size=40)
    est, low, high = bootstrap_ci(values, n_boot=500, seed=7)
    # independent percentile bootstrap with the documented generator
    draws = np.random.default_rng(7).integers(0, 40, size=(500, 40))
    means = values[draws].mean(1)
    assert est == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert bootstrap_ci(values, n_boot=500, seed=7) == (est, low, high)
    assert bootstrap_ci(values, n_boot=500, seed=8) != (est, low, high)
    rec = bootstrap_recovery(patched + rng.normal(0, 0.1, 30), corrupt, clean, n_boot=200, seed=0)
    assert rec.low <= rec.estimate <= rec.high
    assert rec.nonfinite == 0.0


def test_bootstrap_keeps_non_finite_resamples():
    """Near a zero gap a resample's ratio of means is undefined: with many such resamples the
    bounds are NaN (not an interval over the lucky rest), and a few widen the interval."""
    patched, corrupted, clean = np.array([0.5, 0.5]), np.zeros(2), np.array([1.0, -1.0])
    rec = bootstrap_recovery(patched, corrupted, clean, n_boot=400, seed=0)
    assert 0.3 < rec.nonfinite < 0.7  # resamples (1, 1) and (-1, -1) have a zero mean gap
    assert math.isnan(rec.low) and math.isnan(rec.high)

    values = np.random.default_rng(1).normal(size=50)
    seen = []

    def mean(x):
        seen.append(x.mean(-1))
        return x.mean(-1)

    est, low, high = bootstrap_ci(values, statistic=mean, n_boot=1000, seed=2)
    cut = np.quantile(seen[-1], 0.995)  # the top 0.5% of the resamples become undefined

    def undefined_above_cut(x):
        m = x.mean(-1)
        return np.where(m > cut, np.nan, m)

    few = bootstrap_ci(values, statistic=undefined_above_cut, n_boot=1000, seed=2)
    assert few.nonfinite == pytest.approx(0.005)
    # ranked beyond both ends, not dropped: the high bound is unchanged, the low one wider
    assert few.high == pytest.approx(high) and few.low < low < est
    assert math.isnan(bootstrap_ci(values, statistic=undefined_above_cut, n_boot=1000, seed=2,
                                   max_nonfinite=0.001).high)


# --------------------------------------------------------------------------- identities


def test_self_patching_changes_nothing(tower, batch):
    clean, _, labels = batch
    sites = _patch_sites(tower)
    units = sweep_units(tower, sites, "site")
    positional = [s for s in sites if tower.site_layout(s) in ("tokens", "spatial")][:3]
    units += sweep_units(tower, positional, "position")[:20]
    values = run_interventions(tower, clean, _cache(tower, clean, sites), units,
                               metric="logit_diff", labels=labels, progress=False)
    base = _metric(tower, clean, labels)
    assert values.shape == (len(units), B)
    assert torch.allclose(values, base.expand_as(values), atol=1e-10)
    # the check can fail: patching the same units from other images does change the metric
    other = run_interventions(tower, clean, _cache(tower, make_images(B, 9), sites), units,
                              metric="logit_diff", labels=labels, progress=False)
    assert (other - base).abs().max() > 1e-3


def test_patching_every_site_reproduces_source(tower, batch):
    clean, corrupted, labels = batch
    sites = _patch_sites(tower)
    every = [PatchUnit(s) for s in sites]
    out = run_interventions(tower, corrupted, _cache(tower, clean, sites), [every],
                            progress=False)[0]
    with torch.no_grad():
        expected = tower(clean)
        assert not torch.allclose(tower(corrupted), expected)
    assert torch.allclose(out, expected, atol=1e-10)
    # any single residual checkpoint carries the whole run as well
    checkpoints = [s for s in residual_checkpoints(tower) if s in sites]
    outs = run_interventions(tower, corrupted, _cache(tower, clean, checkpoints),
                             [PatchUnit(s) for s in checkpoints], progress=False)
    assert torch.allclose(outs, expected.expand_as(outs), atol=1e-10)


def _hand_patch(model, receiver, donor_cache, labels, site, select):
    """One patched run with an explicit hook: ``act[select] = donor[select]``."""
    def hook(act, hook):
        act = act.clone()
        act[select] = donor_cache[site][select]
        return act

    return _metric(model, receiver, labels, [(site, hook)])


@pytest.mark.parametrize("share_prefix", [True, False])
def test_vit_positions_and_heads_match_hand_written_hooks(vit, batch, share_prefix):
    clean, corrupted, labels = batch
    resid = [f"blocks.{i}.hook_resid_post" for i in range(2)] + ["blocks.0.hook_mlp_out"]
    z_sites = [f"blocks.{i}.attn.hook_z" for i in range(2)]
    cache = _cache(vit, clean, resid + z_sites + ["hook_patch_embed"])
    expected, units = [], []
    for site in resid:
        for p in range(17):
            units.append(PatchUnit(site, position=p))
            expected.append(_hand_patch(vit, corrupted, cache, labels, site, (slice(None), p)))
    for site in z_sites:
        for h in range(2):
            units.append(PatchUnit(site, head=h))
            expected.append(_hand_patch(vit, corrupted, cache, labels, site, (slice(None), slice(None), h)))
        units.append(PatchUnit(site, position=3, head=1))
        expected.append(_hand_patch(vit, corrupted, cache, labels, site, (slice(None), 3, 1)))
    units.append(PatchUnit("hook_patch_embed", position=5))  # no class token: patch 5 = token 6
    expected.append(_hand_patch(vit, corrupted, cache, labels, "hook_patch_embed", (slice(None), 5)))
    values = run_interventions(vit, corrupted, cache, units, metric="logit_diff", labels=labels,
                               max_batch=3 * B, share_prefix=share_prefix, progress=False)
    assert torch.allclose(values, torch.stack(expected), atol=1e-10)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_resnet_positions_and_channel_groups_match_hand_written_hooks(rn, batch, share_prefix):
    clean, corrupted, labels = batch
    sites = ["layer1.0.hook_out", "layer2.0.hook_conv3", "layer3.0.hook_out"]
    cache = _cache(rn, clean, sites + ["attnpool.hook_z"])
    units, expected = [], []
    for site in sites:
        _, channels, height, width = cache[site].shape
        for p in range(height * width):
            units.append(PatchUnit(site, position=p))
            expected.append(_hand_patch(rn, corrupted, cache, labels, site,
                                        (slice(None), slice(None), p // width, p % width)))
        for group in channel_groups(channels, 3):
            units.append(PatchUnit(site, channels=group))
            expected.append(_hand_patch(rn, corrupted, cache, labels, site,
                                        (slice(None), slice(group[0], group[-1] + 1))))
    for h in (0, 3):
        units.append(PatchUnit("attnpool.hook_z", head=h))
        expected.append(_hand_patch(rn, corrupted, cache, labels, "attnpool.hook_z", (slice(None), h)))
    values = run_interventions(rn, corrupted, cache, units, metric="logit_diff", labels=labels,
                               max_batch=5 * B, share_prefix=share_prefix, progress=False)
    assert torch.allclose(values, torch.stack(expected), atol=1e-10)


def test_chunking_does_not_change_results(tower, batch):
    clean, corrupted, labels = batch
    sites = [layer.name for layer in tower.layers()][1:-1]
    if tower.cfg.architecture == "resnet":
        sites = sites[1:]  # skip layer1's 8 x 8 grid: 64 forwards of nothing new
    units = sweep_units(tower, sites, "position")
    cache = _cache(tower, clean, sites)
    runs = [run_interventions(tower, corrupted, cache, units, metric="logit_diff", labels=labels,
                              max_batch=m, share_prefix=s, progress=False)
            for m, s in ((1, False), (7 * B, True), (1000, True))]
    assert len(units) > 20
    for other in runs[1:]:
        assert torch.allclose(runs[0], other, atol=1e-10)


def _hand_patch_group(model, receiver, donor_cache, labels, patches):
    """One patched run with explicit hooks for several ``(site, select)`` patches."""
    by_site = {}
    for site, select in patches:
        by_site.setdefault(site, []).append(select)

    def make(site):
        def hook(act, hook):
            act = act.clone()
            for select in by_site[site]:
                act[select] = donor_cache[site][select]
            return act
        return hook

    return _metric(model, receiver, labels, [(site, make(site)) for site in by_site])


def _fast_path_cases(model):
    """(units, hand-written selects) covering the checkpoints, the last block and the tail."""
    every = slice(None)
    if model.cfg.architecture == "vit":
        cases = [([PatchUnit(f"blocks.{i}.hook_resid_post", position=p)], [(f"blocks.{i}.hook_resid_post", (every, p))])
                 for i in range(2) for p in range(17)]  # incl. the last block and its class token
        cases += [
            ([PatchUnit("blocks.1.hook_resid_pre", position=p)], [("blocks.1.hook_resid_pre", (every, p))])
            for p in (0, 5)
        ]
        cases += [
            ([PatchUnit("hook_embed", position=0)], [("hook_embed", (every, 0))]),
            ([PatchUnit("blocks.1.hook_resid_post", channels=(0, 1, 2))],
             [("blocks.1.hook_resid_post", (every, every, slice(0, 3)))]),
            ([PatchUnit("blocks.1.hook_resid_post", position=0, channels=(1, 5))],
             [("blocks.1.hook_resid_post", (every, 0, torch.tensor([1, 5])))]),
            ([PatchUnit("blocks.1.hook_mlp_out", position=0)], [("blocks.1.hook_mlp_out", (every, 0))]),
            ([PatchUnit("blocks.1.attn.hook_z", head=1)], [("blocks.1.attn.hook_z", (every, every, 1))]),
            ([PatchUnit("blocks.1.attn.hook_z", head=(0, 1))], [("blocks.1.attn.hook_z", (every, every, slice(0, 2)))]),
            ([PatchUnit("hook_pooled")], [("hook_pooled", (every,))]),
            ([PatchUnit("head.hook_logits")], [("head.hook_logits", (every,))]),
            ([PatchUnit("blocks.0.hook_resid_post", position=3), PatchUnit("blocks.1.hook_resid_post", position=0),
              PatchUnit("blocks.1.hook_resid_post", position=4)],
             [("blocks.0.hook_resid_post", (every, 3)), ("blocks.1.hook_resid_post", (every, 0)),
              ("blocks.1.hook_resid_post", (every, 4))]),
        ]
        return cases
    cases = [([PatchUnit(site, position=p)], [(site, (every, every, p // width, p % width))])
             for site, width in (("layer2.0.hook_out", 4), ("layer3.0.hook_out", 2)) for p in range(2 * width)]
    cases += [
        ([PatchUnit("layer4.0.hook_out", position=0)], [("layer4.0.hook_out", (every, every, 0, 0))]),
        ([PatchUnit("stem.hook_out", position=9)], [("stem.hook_out", (every, every, 1, 1))]),
        ([PatchUnit("layer4.0.hook_conv2", channels=(0, 1))], [("layer4.0.hook_conv2", (every, slice(0, 2)))]),
        ([PatchUnit("attnpool.hook_z", head=2)], [("attnpool.hook_z", (every, 2))]),
        ([PatchUnit("attnpool.hook_out")], [("attnpool.hook_out", (every,))]),
        ([PatchUnit("hook_image_embed", channels=(3, 7))], [("hook_image_embed", (every, torch.tensor([3, 7])))]),
        ([PatchUnit("layer2.0.hook_out", position=6), PatchUnit("layer4.0.hook_out", channels=(0, 2))],
         [("layer2.0.hook_out", (every, every, 1, 2)), ("layer4.0.hook_out", (every, torch.tensor([0, 2])))]),
    ]
    return cases


@pytest.mark.parametrize("share_prefix, truncate", [(True, True), (True, False), (False, True), (False, False)])
def test_fast_path_equals_one_forward_per_patch(tower, batch, share_prefix, truncate, monkeypatch):
    from interp.hooked.vit import HookedViTBlock

    clean, corrupted, labels = batch
    cases = _fast_path_cases(tower)
    sites = list(dict.fromkeys(site for _, patches in cases for site, _ in patches))
    cache = _cache(tower, clean, sites)
    expected = torch.stack([_hand_patch_group(tower, corrupted, cache, labels, patches)
                            for _, patches in cases])
    calls = []
    original = HookedViTBlock.forward_class_token
    monkeypatch.setattr(HookedViTBlock, "forward_class_token",
                        lambda self, x, **kw: calls.append(1) or original(self, x, **kw))
    values = run_interventions(tower, corrupted, cache, [units for units, _ in cases],
                               metric="logit_diff", labels=labels, max_batch=4 * B,
                               share_prefix=share_prefix, truncate=truncate, progress=False)
    assert torch.allclose(values, expected, atol=1e-10)
    # the patches changed something, and the last block was truncated only when asked
    assert (values - _metric(tower, corrupted, labels)).abs().max() > 1e-3
    assert bool(calls) == (truncate and tower.cfg.architecture == "vit")
    assert hook_count(tower) == 0


def test_class_token_only_is_used_only_where_nothing_else_is_read(vit, rn):
    from interp.interventions.intervene import needs_class_token_only

    assert needs_class_token_only(vit, [PatchUnit("blocks.1.hook_resid_post", position=3)])
    assert needs_class_token_only(vit, [PatchUnit("blocks.1.hook_resid_pre"), PatchUnit("head.hook_logits")])
    assert needs_class_token_only(vit, [PatchUnit("blocks.0.attn.hook_z", head=0)])
    assert not needs_class_token_only(vit, [PatchUnit("blocks.1.attn.hook_q", head=0)])
    assert not needs_class_token_only(vit, [PatchUnit("blocks.1.hook_resid_mid", position=0)])
    assert not needs_class_token_only(rn, [PatchUnit("layer4.0.hook_out")])


def test_stack_size_is_measured_once_and_picks_the_fastest_per_copy(vit, batch, monkeypatch):
    from interp.interventions import intervene

    clean, corrupted, labels = batch
    sizer = intervene._StackSizer(vit, corrupted, cap=8)
    assert sizer.trials == [1, 2, 4, 8]
    for per_copy in {1: 5.0, 2: 2.0, 4: 1.0, 8: 1.04}.items():  # 8 within 5% of 4: the larger
        n = sizer.next_size(100)
        assert n == per_copy[0]
        sizer.record(n, n * per_copy[1])
    assert sizer.next_size(100) == 8 and intervene.stack_size(vit, corrupted, 8) == 8
    assert intervene._StackSizer(vit, corrupted, cap=8).next_size(3) == 8  # remembered: no trials
    # once a larger size is clearly slower per copy, the larger ones are not tried
    rising = intervene._StackSizer(vit, corrupted, cap=16)
    for n, per_copy in ((1, 3.0), (2, 1.0), (4, 1.5)):
        assert rising.next_size(100) == n
        rising.record(n, n * per_copy)
    assert rising.next_size(100) == 2 and intervene.stack_size(vit, corrupted, 16) == 2
    # too few interventions to compare two sizes: stack them all, remember nothing
    few = intervene._StackSizer(vit, corrupted[:1], cap=4)
    assert few.next_size(1) == 1
    few.record(1, 0.1)
    few.segment_done()
    assert few.next_size(1) == 4 and intervene.stack_size(vit, corrupted[:1], 4) is None
    # a real call measures on its largest segment and then reuses the choice
    intervene._STACK_SIZES.clear()
    sites = ["blocks.0.hook_resid_post"]
    units = sweep_units(vit, sites, "position")
    run_interventions(vit, corrupted, _cache(vit, clean, sites), units, metric="logit_diff",
                      labels=labels, max_batch=4 * B, progress=False)
    assert intervene.stack_size(vit, corrupted, 4) in (1, 2, 4)


# --------------------------------------------------------------------------- TransformerLens


@pytest.mark.parametrize("act_name, axes, setter", [
    ("resid_post", ("layer", "pos"), "layer_pos_patch_setter"),
    ("mlp_out", ("layer", "pos"), "layer_pos_patch_setter"),
    ("z", ("layer", "head"), "layer_head_vector_patch_setter"),
    ("z", ("layer", "pos", "head"), "layer_pos_head_vector_patch_setter"),
])
def test_matches_transformer_lens_generic_activation_patch(vit, batch, act_name, axes, setter):
    from transformer_lens import patching as tl

    clean, corrupted, labels = batch
    ranges = {"layer": range(2), "pos": range(0, 17, 4), "head": range(2)}
    index_df = pd.DataFrame(list(pd.MultiIndex.from_product([ranges[a] for a in axes])), columns=list(axes))
    _, cache = vit.run_with_cache(clean)
    tl_values = tl.generic_activation_patch(
        vit, corrupted, cache, lambda logits: logit_diff(logits, labels), getattr(tl, setter),
        act_name, index_df=index_df, reduce="none",
    ).values
    site = {"resid_post": "blocks.{}.hook_resid_post", "mlp_out": "blocks.{}.hook_mlp_out",
            "z": "blocks.{}.attn.hook_z"}[act_name]
    units = [PatchUnit(site.format(row.layer), position=getattr(row, "pos", None),
                       head=getattr(row, "head", None)) for row in index_df.itertuples()]
    ours = activation_patching(vit, clean, corrupted, labels, units, progress=False)
    assert tl_values.shape == ours.values.shape == (len(index_df), B)
    assert torch.allclose(ours.values.float(), tl_values.float(), atol=1e-5)
    # scalar mode too (TL's default): the batch mean
    tl_mean = tl.generic_activation_patch(
        vit, corrupted, cache, lambda logits: logit_diff(logits, labels).mean(),
        getattr(tl, setter), act_name, index_df=index_df,
    )
    assert torch.allclose(ours.values.mean(1).float(), tl_mean.float(), atol=1e-5)


# --------------------------------------------------------------------------- directions


def test_noising_swaps_the_roles(vit, batch):
    clean, corrupted, labels = batch
    sites = ["blocks.0.hook_attn_out", "blocks.1.hook_mlp_out"]
    den = activation_patching(vit, clean, corrupted, labels, sites=sites, progress=False)
    noi = activation_patching(vit, clean, corrupted, labels, sites=sites, direction="noising",
                              progress=False)
    assert torch.allclose(den.receiver, _metric(vit, corrupted, labels))
    assert torch.allclose(den.donor, _metric(vit, clean, labels))
    assert torch.allclose(noi.receiver, den.donor) and torch.allclose(noi.donor, den.receiver)
    cache = _cache(vit, corrupted, sites)
    for u, site in enumerate(sites):
        hand = _hand_patch(vit, clean, cache, labels, site, (slice(None),))
        assert torch.allclose(noi.values[u], hand, atol=1e-10)
    assert np.allclose(noi.recovery(), normalized_recovery(noi.values, noi.receiver, noi.donor),
                       equal_nan=True)


# --------------------------------------------------------------------------- cross-domain


def test_pair_by_class_is_seeded_and_matches_labels():
    a = torch.tensor([0, 0, 0, 1, 1, 2])
    b = torch.tensor([1, 0, 1, 0, 3, 1, 0])
    ra, rb = pair_by_class(a, b, seed=0)
    assert (a[ra] == b[rb]).all()
    assert len(set(ra.tolist())) == len(ra) and len(set(rb.tolist())) == len(rb)
    assert sorted(a[ra].tolist()) == [0, 0, 0, 1, 1]  # min(3, 3) zeros, min(2, 3) ones, no 2/3
    again = pair_by_class(a, b, seed=0)
    assert (again[0] == ra).all() and (again[1] == rb).all()
    seeds = {tuple(pair_by_class(a, b, seed=s)[1].tolist()) for s in range(6)}
    assert len(seeds) > 1
    with pytest.raises(ValueError, match="share no class"):
        pair_by_class(torch.tensor([0]), torch.tensor([1]))


def _domain_data():
    source, target = make_images(6, 11), make_images(5, 12)
    return source, torch.tensor([0, 0, 1, 1, 2, 4]), target, torch.tensor([1, 0, 0, 3, 1])


def test_cross_domain_paired_against_hand_computation(vit):
    xs, ys, xt, yt = _domain_data()
    sites = [layer.name for layer in vit.layers()] + component_sites(vit)
    results = cross_domain_patching(vit, xs, ys, xt, yt, sites=sites, pairing="paired", seed=3,
                                    source_domain="real", target_domain="quickdraw", progress=False)
    assert [r.direction for r in results] == ["denoising", "noising"]
    ra, rb = pair_by_class(ys, yt, seed=3)
    labels = ys[ra]
    den = results[0]
    assert torch.equal(den.labels, labels)
    assert torch.allclose(den.receiver, _metric(vit, xt[rb], labels))
    assert torch.allclose(den.donor, _metric(vit, xs[ra], labels))
    cache = _cache(vit, xs[ra], sites)
    for u, (unit,) in enumerate(den.interventions):
        hand = _hand_patch(vit, xt[rb], cache, labels, unit.site, (slice(None),))
        assert torch.allclose(den.values[u], hand, atol=1e-10)
    # a whole residual-stream site carries the donor's run: recovery exactly 1
    table = results_frame(results, n_boot=50)
    rec = table[(table.statistic == "recovery") & (table.site_kind == "layer")]
    assert np.allclose(rec["value"], 1.0)
    assert set(table["source_domain"]) == {"real"} and set(table["target_domain"]) == {"quickdraw"}


def test_cross_domain_class_mean_against_hand_computation(rn):
    xs, ys, xt, yt = _domain_data()
    site = "layer2.0.hook_out"
    (den,) = cross_domain_patching(rn, xs, ys, xt, yt, sites=[site], pairing="class_mean",
                                   directions=["denoising"], progress=False)
    keep = torch.tensor([c in (0, 1) for c in yt.tolist()])  # target classes the source has
    labels = yt[keep]
    src = _cache(rn, xs, [site])[site]
    means = torch.stack([src[ys == c].mean(0) for c in labels.tolist()])
    hand = _hand_patch(rn, xt[keep], {site: means}, labels, site, (slice(None),))
    assert torch.allclose(den.values[0], hand, atol=1e-10)
    source_metric = _metric(rn, xs, ys)
    donor = torch.stack([source_metric[ys == c].mean() for c in labels.tolist()])
    assert torch.allclose(den.donor, donor)
    assert torch.allclose(class_means({site: src}, ys, labels)[site], means)


def test_class_mean_recovery_is_normalised_by_the_whole_site_class_mean_patch(rn):
    """Recovery of a class-mean patch = (patched - receiver) / (reference - receiver), with the
    reference the receiver's metric with the whole site at the class mean (hand-computed), so
    patching the whole site recovers exactly 1 (the donor's mean metric is unreachable)."""
    xs, ys, xt, yt = _domain_data()
    site = "layer2.0.hook_conv3"
    units = [(PatchUnit(site),), (PatchUnit(site, channels=tuple(range(8))),)]
    (den,) = cross_domain_patching(rn, xs, ys, xt, yt, units, pairing="class_mean",
                                   directions=["denoising"], progress=False)
    keep = torch.tensor([c in (0, 1) for c in yt.tolist()])
    labels, receiver_images = yt[keep], xt[keep]
    src = _cache(rn, xs, [site])[site]
    means = torch.stack([src[ys == c].mean(0) for c in labels.tolist()])
    receiver = _metric(rn, receiver_images, labels)
    whole = _hand_patch(rn, receiver_images, {site: means}, labels, site, (slice(None),))
    part = _hand_patch(rn, receiver_images, {site: means}, labels, site, (slice(None), slice(0, 8)))
    table = den.to_frame(n_boot=20)
    rec = table[table.statistic == "recovery"]["value"].to_numpy()
    assert rec[0] == pytest.approx(1.0, abs=1e-12)
    hand = float((part - receiver).mean() / (whole - receiver).mean())
    assert rec[1] == pytest.approx(hand, rel=1e-9)
    assert np.allclose(den.recovery()[0], 1.0)
    assert torch.allclose(den.reference, torch.stack([whole, whole]), atol=1e-10)
    # the donor's own (per-image mean) metric is kept for the tables, but is not reached
    donor = den.donor.double()
    assert abs(float((whole - receiver).mean() / (donor - receiver).mean()) - 1.0) > 1e-3


# --------------------------------------------------------------------------- tables


def test_tidy_tables(vit, batch):
    clean, corrupted, labels = batch
    res = activation_patching(vit, clean, corrupted, labels, sites=["blocks.1.attn.hook_z"],
                              granularity="head", meta={"run": "r", "seed": 0},
                              class_names=[f"c{i}" for i in range(N_CLASSES)], progress=False)
    table = res.to_frame(n_boot=50, per_class=True)
    for column in ("run", "seed", "site", "layer", "position", "head", "direction", "metric",
                   "class_name", "statistic", "value", "ci_low", "ci_high", "n", "granularity"):
        assert column in table.columns
    assert set(table.statistic) == {"patched", "effect", "recovery"}
    assert set(table.class_name) == {"all", "c0", "c1", "c2", "c3"}
    assert len(table) == 2 * 5 * 3  # heads x class subsets x statistics
    mean_patched = table[(table.statistic == "patched") & (table.class_name == "all")]["value"]
    assert np.allclose(mean_patched, res.values.mean(1).numpy())
    examples = res.examples_frame()
    assert len(examples) == 2 * B
    assert np.allclose(examples["patched"], res.values.reshape(-1).numpy())
    assert res.to_frame(n_boot=50).equals(res.to_frame(n_boot=50))  # seeded


def test_figures_from_tables(tmp_path, vit, rn):
    from interp.plots.patching import plot_layer_heatmap, plot_recovery_by_layer

    xs, ys, xt, yt = _domain_data()
    frames = [r.to_frame(n_boot=20) for r in cross_domain_patching(
        vit, xs, ys, xt, yt, sites=[layer.name for layer in vit.layers()] + component_sites(vit),
        pairing="class_mean", progress=False)]
    for granularity, sites in (("position", ["blocks.0.hook_resid_post"]),
                               ("head", ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"])):
        frames += [r.to_frame(n_boot=20) for r in cross_domain_patching(
            vit, xs, ys, xt, yt, sites=sites, granularity=granularity, directions=["denoising"],
            progress=False)]
    table = pd.concat(frames)
    table.to_csv(tmp_path / "t.csv", index=False)
    table = pd.read_csv(tmp_path / "t.csv")
    plot_recovery_by_layer(table, path=tmp_path / "rec.png")
    plot_layer_heatmap(table, "position", path=tmp_path / "pos.png")
    plot_layer_heatmap(table, "head", path=tmp_path / "head.png")
    rn_table = pd.concat(r.to_frame(n_boot=20) for r in cross_domain_patching(
        rn, xs, ys, xt, yt, sites=["layer2.0.hook_out", "layer3.0.hook_out"], granularity="position",
        directions=["denoising"], progress=False))
    plot_layer_heatmap(rn_table, "position", path=tmp_path / "rn_pos.png")  # ragged rows
    for name in ("rec", "pos", "head", "rn_pos"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no rows with granularity 'channel_group'"):
        plot_layer_heatmap(table, "channel_group")


# --------------------------------------------------------------------------- bad input


def test_bad_input_errors_and_no_leaked_hooks(vit, batch):
    clean, corrupted, labels = batch
    cache = _cache(vit, clean, ["blocks.0.hook_resid_post"])

    def patch(*units, corrupted=corrupted, labels=labels, **options):
        return activation_patching(vit, clean, corrupted, labels, list(units) or None,
                                   progress=False, **options)

    calls = [
        (lambda: patch(corrupted=corrupted[:3]),
         ValueError, r"same shape.*\(4, 3, 32, 32\).*\(3, 3, 32, 32\)"),
        (lambda: patch(labels=labels[:2]), ValueError, r"labels must be \(4,\)"),
        (lambda: patch(sites=["blocks.9.hook_resid_post"]),
         UnknownSiteError, r"blocks\.9\.hook_resid_post.*valid sites"),
        (lambda: patch(PatchUnit("blocks.0.hook_resid_post", position=17)),
         IndexError, r"position 17 out of range.*allowed 0\.\.16"),
        (lambda: patch(PatchUnit("blocks.0.attn.hook_z", head=2)),
         IndexError, r"head 2 out of range.*allowed 0\.\.1"),
        (lambda: patch(PatchUnit("blocks.0.hook_resid_post", head=0)), ValueError, r"no head axis"),
        (lambda: patch(PatchUnit("hook_image_embed", position=0)), ValueError, r"has no positions"),
        (lambda: patch(direction="sideways"),
         ValueError, r"direction must be one of .*denoising.*noising.*got 'sideways'"),
        (lambda: patch(metric="acc"), ValueError, r"metric.*must be one of.*logit_diff.*got 'acc'"),
        (lambda: patch(sites=["hook_image_embed"], granularity="position"),
         ValueError, r"has no position axis"),
        (lambda: patch(granularity="pixel"), ValueError, r"granularity must be one of .*got 'pixel'"),
        (lambda: run_interventions(vit, corrupted[:2], cache, [PatchUnit("blocks.0.hook_resid_post")],
                                   progress=False),
         ValueError, r"'blocks\.0\.hook_resid_post' has shape \(4, 17, 32\), expected \(2, 17, 32\)"),
        (lambda: cross_domain_patching(vit, clean, labels, corrupted, labels, pairing="nearest",
                                       progress=False),
         ValueError, r"pairing must be one of .*paired.*class_mean.*got 'nearest'"),
    ]
    for call, error, pattern in calls:
        with pytest.raises(error, match=pattern):
            call()
        assert hook_count(vit) == 0

    def exploding_metric(logits, labels):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        run_interventions(vit, corrupted, cache, [PatchUnit("blocks.0.hook_resid_post")],
                          metric=exploding_metric, labels=labels, progress=False)
    assert hook_count(vit) == 0
    assert not vit.training


# --------------------------------------------------------------------------- CLI


def _tiny_run(tmp_path, data_root):
    """A run directory as the trainer writes it: model_config.json, epoch_0.pt, mixture.json."""
    from fakedata import write_tiny_run

    return write_tiny_run(tmp_path / "runs" / "tiny-vit", data_root,
                          mixture="lso-cipqrs-noquickdrawclasses", setup="cg_high",
                          test_domain="quickdraw", heldout=["axe", "traffic_light"],
                          train_seed=2, mixture_seed=2)


def test_cli_patch_end_to_end(tmp_path):
    from fakedata import make_fake_domainnet

    from domainlens.cli import main

    root = make_fake_domainnet(tmp_path / "data")
    run = _tiny_run(tmp_path, root)
    code = main(["patch", str(run), "--data", str(root), "--source", "real", "--target", "quickdraw",
                 "--n-boot", "30", "--quiet", "--granularity", "head"])
    assert code == 0
    out = run / "patching"
    table = pd.read_csv(out / "patching_real_to_quickdraw.csv")
    assert set(table["run"]) == {"tiny-vit"} and set(table["setup"]) == {"cg_high"}
    assert set(table["test_domain"]) == {"quickdraw"} and set(table["seed"]) == {2}
    assert set(table["granularity"]) == {"site", "head"}
    assert set(table["pairing"]) == {"paired", "class_mean"}
    assert set(table["direction"]) == {"denoising", "noising"}
    assert set(table["class_name"]) == {"all", "axe", "traffic_light"}
    assert len(pd.read_csv(out / "patching_examples_real_to_quickdraw.csv")) > 0
    for name in ("recovery_by_layer", "layer_head"):
        assert (out / f"{name}_real_to_quickdraw.png").stat().st_size > 1000


def test_cli_patch_bad_input(tmp_path, capsys):
    from fakedata import make_fake_domainnet

    from domainlens.cli import main

    root = make_fake_domainnet(tmp_path / "data", with_images=False)
    run = _tiny_run(tmp_path, root)
    assert main(["patch", str(run), "--source", "real", "--target", "doodles"]) == 2
    assert "doodles" in capsys.readouterr().err
    assert main(["patch", str(run), "--source", "real", "--target", "real"]) == 2
    assert "must differ" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["patch", "--help"])
    assert "usage: domainlens patch" in capsys.readouterr().out
