"""SAE feature sharing of one run: ``domainlens features`` as a function.

:func:`features_run` loads a run's checkpoint and, for every requested site (default: the
final image embedding ``hook_image_embed``; any of ``model.layers()`` for the layer-by-layer
reading, pooled as in CKA), L2-normalises the pooled activations, trains a sparse
autoencoder (:mod:`interp.embeddings.sae`) on the train split of every domain plus the base
set (``<data>/base.tsv``), encodes each domain's test split, and counts per (class, domain)
how often each latent is among an image's ``top`` largest positive latents. It writes under
``out`` (default ``<run>/eval/features``):

* ``sae_quality.csv``: per site and split (train, test): explained variance, mse, L0, dead
  latents; ``sae_history.csv``: the training loss per epoch; ``sae_<site>.pt``: the weights;
* ``sharing.csv``: per site, class and ordered domain pair, share@k averaged over ``ks``, for
  the ``reference`` ``none`` (the measured value, as in every table) and the controls ``class-shuffle`` (class labels permuted
  within each domain) and, if asked, ``init`` (SAE and sharing on the epoch-0 checkpoint);
* ``sharing_summary.csv``: the mean over each class subset's classes (held-out, seen, all);
* ``sharing_scores.csv``: every domain's score = mean of its summary row without the diagonal;
* figures ``sharing.png`` (class-averaged matrices of the first class subset, one panel per
  site) and, for more than one site, ``sharing_by_layer.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domainlens import layout
from domainlens.experiments.inputs import ImageSettings, load_inputs, write_table
from training.runinfo import CLASS_SUBSETS

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from domainlens.experiments.inputs import AnalysisOptions, ModelSource
    from interp.embeddings.sae import SAEConfig

EMBED_SITE = "hook_image_embed"
#: Controls: ``class-shuffle`` (class labels permuted within each domain before counting: the
#: sharing expected without class structure), ``init`` (the whole analysis on epoch 0).
REFERENCES: tuple[str, ...] = ("init", "class-shuffle")


@dataclass(frozen=True)
class FeatureSettings(ImageSettings):
    """Settings of :func:`features_run` (see ``domainlens features --help``); SAE defaults are
    the paper's (expansion 4, Adam lr 1e-4, L1 1e-4, batch 2048)."""

    sites: Sequence[str] = (EMBED_SITE,)
    expansion: int = 4
    lr: float = 1e-4
    l1: float = 1e-4
    sae_batch_size: int = 2048
    epochs: int = 100
    top: int = 20
    ks: Sequence[int] = (5, 10, 15, 20)
    include_base: bool = True
    train_max_per_class: int | None = None
    classes: Sequence[str] = CLASS_SUBSETS
    references: Sequence[str] = ("class-shuffle",)
    pooling: str = "mean"

    def validate(self) -> FeatureSettings:
        """Raise ``ValueError`` naming a bad value; return ``self``."""
        from training.util.validate import check_choices, check_number

        self.sae_config().validate()  # the SAE's own checks (expansion, lr, l1, ...)
        if not self.sites:
            raise ValueError("sites: none given")
        if not check_choices("class subsets", self.classes, CLASS_SUBSETS):
            raise ValueError(f"class subsets: none given; expected values from {list(CLASS_SUBSETS)}")
        check_choices("references", self.references, REFERENCES)
        check_number("top", self.top, low=1, integer=True)
        if not self.ks:
            raise ValueError("ks: none given")
        for k in self.ks:
            check_number("k", k, low=1, integer=True)
        if self.train_max_per_class is not None:
            check_number("train_max_per_class", self.train_max_per_class, low=1, integer=True)
        self.check_images()
        return self

    def sae_config(self) -> SAEConfig:
        """The SAE training settings these settings name."""
        from interp.embeddings.sae import SAEConfig

        return SAEConfig(expansion=self.expansion, lr=self.lr, l1=self.l1,
                         batch_size=self.sae_batch_size, epochs=self.epochs, seed=self.seed)


def _base_dataset(run: Any, data: Path):
    """The base set's images (``<data>/base.tsv``), decoded as ``run``'s source says."""
    from training.mixtures import read_base_tsv

    base = read_base_tsv(data / "base.tsv", run.info.classes)
    return run.dataset(base["filepath"].tolist())


def features_run(source: str | Path | ModelSource, settings: FeatureSettings | None = None,
                 **options: Unpack[AnalysisOptions]) -> dict[str, Path]:
    """SAE feature sharing of one model (module docstring); returns ``{"quality": csv,
    "history": csv, "sharing": csv, "summary": csv, "scores": csv, "sharing_figure": png,
    ["sharing_by_layer": png], "sae_<site>": pt}``.

    ``source``: a run directory or any model source, ``options``:
    :class:`~.inputs.AnalysisOptions` (a non-run source needs ``data_root`` and ``out``, and
    has no ``init`` reference). ``cache_dir``: activation cache (``""``: none)."""
    import numpy as np
    import pandas as pd

    from interp.embeddings.sae import encode, sae_quality, save_sae, train_sae
    from interp.embeddings.separation import l2_normalise, shuffled
    from interp.embeddings.sharing import (
        domain_scores,
        latent_histograms,
        sharing_summary,
        sharing_table,
    )
    from interp.hooked.activations import check_pooling, collect_activations
    from interp.plots.cka import save_figure
    from interp.plots.embeddings import plot_sharing, plot_sharing_by_layer

    settings = (settings or FeatureSettings()).validate()
    inputs = load_inputs(source, out_name=Path("eval") / layout.FEATURES_DIR,
                         references=settings.references, **options)
    run, data, domains, out = inputs.run, inputs.data, inputs.domains, inputs.out
    sites = run.model.check_sites(settings.sites)
    check_pooling(run.model, sites, settings.pooling)
    base = _base_dataset(run, data) if settings.include_base else None  # missing file: fail now
    subsets = inputs.subsets(settings.classes)
    config = settings.sae_config()
    train_images = replace(settings, max_per_class=settings.train_max_per_class)
    saes: dict[str, Any] = {}

    def analyse(hooked: Any, reference: str) -> tuple[list, list, list]:
        """SAE quality rows, histories and sharing tables of one checkpoint; with
        ``reference="none"`` also the class-shuffled sharing and the SAEs (``saes``)."""
        train = inputs.activations(hooked, sites, train_images, split="train",
                                   pooling=settings.pooling)
        test = inputs.activations(hooked, sites, settings, split="test", pooling=settings.pooling)
        base_acts = None
        if base is not None:  # the dataset decodes and normalises itself
            base_acts = collect_activations(
                hooked.model, base, sites, pooling=settings.pooling, desc="base",
                batch_size=settings.batch_size, device=inputs.device, cache_dir=inputs.cache_dir,
                num_workers=settings.workers, progress=settings.progress)
        index = pd.concat([test[d].index for d in domains], ignore_index=True)
        doms, cls = index["domain"].to_numpy(), index["class_name"].to_numpy()
        class_order = [c for c in run.info.classes if c in set(cls)] or list(dict.fromkeys(cls))
        labels = {reference: cls}
        if reference == "none" and "class-shuffle" in settings.references:
            # the null of "same class": class labels permuted within each domain
            labels["class-shuffle"] = shuffled(cls, settings.seed, "class", within=doms)
        quality, history, sharing = [], [], []
        for site in sites:
            x_train = [train[d].acts[site].numpy() for d in domains]
            if base_acts is not None:
                x_train.append(base_acts[site].numpy())
            x_train = l2_normalise(np.concatenate(x_train))
            x_test = l2_normalise(np.concatenate([test[d].acts[site].numpy() for d in domains]))
            sae, hist_table = train_sae(x_train, config)
            if settings.top > sae.n_latents:
                raise ValueError(f"top={settings.top} is larger than the number of latents "
                                 f"({sae.n_latents}) of the SAE at {site}")
            if reference == "none":
                saes[site] = sae
            history.append(hist_table.assign(site=site, reference=reference))
            for split, x in (("train", x_train), ("test", x_test)):
                quality.append({"site": site, "reference": reference, "split": split,
                                "n_images": len(x), **sae_quality(sae, x)})
            z = encode(sae, x_test)
            for ref, classes in labels.items():
                counts, c_order, d_order = latent_histograms(
                    z, doms, classes, domain_order=domains, class_order=class_order,
                    top=settings.top)
                sharing.append(sharing_table(counts, c_order, d_order, settings.ks)
                               .assign(site=site, reference=ref))
        return quality, history, sharing

    quality, history, sharing = analyse(run, "none")
    if "init" in settings.references:
        init = inputs.checkpoint(0)
        for part, more in zip((quality, history, sharing), analyse(init, "init"), strict=True):
            part.extend(more)
    written = {}
    for site, sae in saes.items():
        save_sae(sae, config, out / layout.sae_file(site))
        written[Path(layout.sae_file(site)).stem] = out / layout.sae_file(site)
    sharing_t = pd.concat(sharing, ignore_index=True)
    summaries, scores = [], []
    for (ref, site), part in sharing_t.groupby(["reference", "site"], sort=False):
        for name, classes in subsets.items():
            summary = sharing_summary(part, classes).assign(site=site, reference=ref,
                                                            class_subset=name)
            summaries.append(summary)
            scores.append(domain_scores(summary, domains).assign(site=site, reference=ref,
                                                                 class_subset=name))
    summary_t = pd.concat(summaries, ignore_index=True)
    scores_t = pd.concat(scores, ignore_index=True)
    meta = inputs.meta()

    def tagged(table: pd.DataFrame) -> pd.DataFrame:
        """``table`` with the run's metadata columns; the init rows say epoch 0."""
        table = table.assign(**meta)
        table.loc[table["reference"] == "init", "epoch"] = 0
        return table
    k_text = ",".join(str(k) for k in settings.ks)
    for t in (sharing_t, summary_t, scores_t):
        t["top"], t["ks"] = settings.top, k_text
    written = {
        "quality": write_table(out / layout.SAE_QUALITY, tagged(pd.DataFrame(quality))),
        "history": write_table(out / layout.SAE_HISTORY, tagged(pd.concat(history))),
        "sharing": write_table(out / layout.SHARING_TABLE, tagged(sharing_t)),
        "summary": write_table(out / layout.SHARING_SUMMARY, tagged(summary_t)),
        "scores": write_table(out / layout.SHARING_SCORES, tagged(scores_t)),
        **written,
    }
    first = next(iter(subsets))
    title = f"{inputs.title()}: {first} classes"
    own = (summary_t["class_subset"] == first) & (summary_t["reference"] == "none")
    written["sharing_figure"] = save_figure(plot_sharing(summary_t[own], title=title),
                                            out / layout.SHARING_FIGURE)
    if len(sites) > 1:
        own = (scores_t["class_subset"] == first) & (scores_t["reference"] == "none")
        written["sharing_by_layer"] = save_figure(
            plot_sharing_by_layer(scores_t[own], title=title),
            out / layout.SHARING_BY_LAYER)
    return written
