"""Ablations: zero / mean / resample values, circuit complements, sweeps, errors, hook hygiene.

Each ablated output is compared with an explicit hook written out here, and each
replacement value with a computation that does not use :mod:`interp.interventions.ablation` (a
per-image loop over ``run_with_cache``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from patch_helpers import hook_count, make_images

from interp.hooked.base import UnknownSiteError
from interp.interventions.ablation import (
    ablated,
    ablation_sweep,
    ablation_values,
    complement_units,
    reference_activations,
    run_with_ablations,
)
from interp.interventions.units import PatchUnit, sweep_units
from interp.metrics import faithfulness, true_class_logit

B = 4


@pytest.fixture(scope="module")
def data():
    """images (B, 3, 32, 32), labels (B,), reference images (6, 3, 32, 32)."""
    return make_images(B, 5), torch.tensor([4, 0, 2, 1]), make_images(6, 6)


def _sites(model):
    if model.cfg.architecture == "vit":
        return ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post", "blocks.1.attn.hook_z"]
    return ["layer1.0.hook_out", "layer3.0.hook_conv2", "attnpool.hook_z"]


def _per_image(model, images, site):
    """Activations at ``site`` one image at a time: ``(N, *shape)``."""
    rows = []
    with torch.no_grad():
        for image in images:
            _, cache = model.run_with_cache(image[None], names_filter=[site])
            rows.append(cache[site][0].clone())
    return torch.stack(rows)


def _hand_run(model, images, hooks):
    with torch.no_grad():
        return model.run_with_hooks(images, fwd_hooks=hooks)


def test_values_against_per_image_loop(tower, data):
    images, _, reference = data
    sites = _sites(tower)
    zero = ablation_values(tower, "zero", sites)
    mean = ablation_values(tower, "mean", sites, reference=reference)
    resample = ablation_values(tower, "resample", sites, reference=reference, batch=5, seed=3)
    for site in sites:
        ref = _per_image(tower, reference, site)
        assert zero[site].shape == (1, *ref.shape[1:]) and not zero[site].any()
        assert torch.allclose(mean[site][0], ref.mean(0), atol=1e-12)
        assert resample[site].shape == (5, *ref.shape[1:])
        rows = [int(torch.nonzero((ref - r).flatten(1).abs().amax(1) < 1e-12)[0]) for r in resample[site]]
        assert rows == torch.randint(0, 6, (5,), generator=torch.Generator().manual_seed(3)).tolist()
    # one draw of reference images is shared by all sites, and it is seeded
    again = ablation_values(tower, "resample", sites, reference=reference, batch=5, seed=3)
    other = ablation_values(tower, "resample", sites, reference=reference, batch=5, seed=4)
    assert all(torch.equal(again[s], resample[s]) for s in sites)
    assert not all(torch.equal(other[s], resample[s]) for s in sites)
    acts = reference_activations(tower, reference, sites)
    from_acts = ablation_values(tower, "mean", sites, reference=acts)
    assert all(torch.allclose(from_acts[s], mean[s]) for s in sites)


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_whole_site_ablation_matches_explicit_hook(tower, data, method):
    images, _, reference = data
    site = _sites(tower)[0]
    values = ablation_values(tower, method, [site], reference=reference, batch=B, seed=1)

    def hook(act, hook):
        return values[site].expand_as(act).clone()

    out = run_with_ablations(tower, images, PatchUnit(site), values)
    expected = _hand_run(tower, images, [(site, hook)])
    assert torch.allclose(out, expected, atol=1e-12)
    with torch.no_grad():
        assert not torch.allclose(out, tower(images))  # the ablation does something


def test_complement_units_keep_the_circuit(vit, data):
    images, _, reference = data
    sites = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"]
    values = ablation_values(vit, "mean", sites, reference=reference)
    kept = {"blocks.0.hook_resid_post": [0, 5, 6, 7, 31], "blocks.1.attn.hook_z": [1]}
    units = complement_units(vit, kept)
    assert units == [
        PatchUnit("blocks.0.hook_resid_post", channels=[c for c in range(32) if c not in (0, 5, 6, 7, 31)]),
        PatchUnit("blocks.1.attn.hook_z", head=(0,)),
    ]
    outside = torch.ones(32, dtype=torch.bool)
    outside[kept["blocks.0.hook_resid_post"]] = False

    def resid_hook(act, hook):
        return torch.where(outside, values[hook.name], act)

    def z_hook(act, hook):
        act = act.clone()
        act[:, :, 0] = values[hook.name][:, :, 0]
        return act

    expected = _hand_run(vit, images, [("blocks.0.hook_resid_post", resid_hook),
                                       ("blocks.1.attn.hook_z", z_hook)])
    assert torch.allclose(run_with_ablations(vit, images, units, values), expected, atol=1e-12)
    # keeping everything ablates nothing; keeping nothing ablates whole sites
    assert complement_units(vit, {"blocks.1.attn.hook_z": [0, 1]}) == []
    with torch.no_grad():
        assert torch.allclose(run_with_ablations(vit, images, [], values), vit(images))
    whole = run_with_ablations(vit, images, [PatchUnit(s) for s in sites], values)
    empty = complement_units(vit, {s: [] for s in sites})
    assert torch.allclose(run_with_ablations(vit, images, empty, values), whole, atol=1e-12)


def test_faithfulness_formula(vit, data):
    images, labels, reference = data
    sites = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    values = ablation_values(vit, "mean", sites, reference=reference)
    kept = {s: list(range(16)) for s in sites}
    with torch.no_grad():
        full = true_class_logit(vit(images), labels)
        circuit = true_class_logit(run_with_ablations(vit, images, complement_units(vit, kept), values), labels)
        empty = true_class_logit(run_with_ablations(vit, images, [PatchUnit(s) for s in sites], values), labels)
    expected = (circuit.mean() - empty.mean()) / (full.mean() - empty.mean())
    assert faithfulness(circuit, empty, full) == pytest.approx(float(expected))


def test_sweep_matches_single_runs(tower, data):
    images, labels, reference = data
    sites = _sites(tower)
    values = ablation_values(tower, "resample", sites, reference=reference, batch=B, seed=0)
    units = sweep_units(tower, sites[:1], "channel_group", n_groups=4) + [PatchUnit(s) for s in sites]
    result = ablation_sweep(tower, images, labels, units, values, method="resample",
                            meta={"run": "toy"}, progress=False)
    assert result.values.shape == (len(units), B)
    for u, unit in enumerate(units):
        with torch.no_grad():
            single = true_class_logit(run_with_ablations(tower, images, unit, values), labels)
        assert torch.allclose(result.values[u], single, atol=1e-10)
    with torch.no_grad():
        assert torch.allclose(result.clean, true_class_logit(tower(images), labels))
    table = result.to_frame(n_boot=50)
    assert set(table.statistic) == {"ablated", "effect"} and set(table.run) == {"toy"}
    effect = table[table.statistic == "effect"]["value"].to_numpy()
    assert np.allclose(effect, result.effect.mean(1).numpy())


def test_gradients_flow_through_ablations(vit, data):
    images, labels, reference = data
    site = "blocks.0.hook_resid_post"
    values = ablation_values(vit, "mean", [site], reference=reference)
    x = images.clone().requires_grad_(True)
    logits = run_with_ablations(vit, x, PatchUnit(site, channels=range(8)), values)
    true_class_logit(logits, labels).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # a fully ablated residual stream cuts every path from the input
    x.grad = None
    logits = run_with_ablations(vit, x, PatchUnit(site), values)
    grad = torch.autograd.grad(logits.sum(), x, allow_unused=True)[0]
    assert grad is None or not grad.any()


def test_bad_input_and_no_leaked_hooks(vit, data):
    images, labels, reference = data
    site = "blocks.0.hook_resid_post"
    values = ablation_values(vit, "zero", [site])
    calls = [
        (lambda: ablation_values(vit, "noise", [site]), ValueError,
         r"ablation method must be one of .*zero.*mean.*resample.*got 'noise'"),
        (lambda: ablation_values(vit, "mean", [site]), ValueError, r"'mean' needs reference"),
        (lambda: ablation_values(vit, "resample", [site], reference=reference), ValueError,
         r"resample ablation needs batch >= 1"),
        (lambda: ablation_values(vit, "mean", [site], reference={"blocks.1.hook_resid_post": images}),
         ValueError, r"lack site\(s\) \['blocks\.0\.hook_resid_post'\]"),
        (lambda: ablation_values(vit, "zero", ["blocks.7.hook_resid_post"]), UnknownSiteError,
         r"blocks\.7\.hook_resid_post.*valid sites"),
        (lambda: complement_units(vit, {site: [40]}), IndexError, r"kept channels \[40\].*allowed 0\.\.31"),
        (lambda: complement_units(vit, {"blocks.0.attn.hook_pattern": [0]}), ValueError,
         r"layout 'pattern' without circuit units"),
        (lambda: run_with_ablations(vit, images, PatchUnit(site, channels=[32]), values), IndexError,
         r"channel\(s\) \[32\] out of range.*allowed 0\.\.31"),
        (lambda: run_with_ablations(vit, images, PatchUnit(site), {}), ValueError,
         r"no replacement activations for site 'blocks\.0\.hook_resid_post'"),
        (lambda: run_with_ablations(
            vit, images, PatchUnit(site),
            ablation_values(vit, "resample", [site], reference=reference, batch=3)),
         ValueError, r"batch 3 but the run has batch 4"),
    ]
    for call, error, pattern in calls:
        with pytest.raises(error, match=pattern):
            call()
        assert hook_count(vit) == 0
    with pytest.raises(KeyError, match="boom"), ablated(vit, PatchUnit(site), values) as model:
        assert hook_count(model) == 1
        raise KeyError("boom")
    assert hook_count(vit) == 0
