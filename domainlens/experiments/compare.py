"""Several models, one analysis each, side by side: ``domainlens compare`` as a function.

:func:`compare_models` runs the same analyses over a list of model sources
(:class:`~.inputs.ModelSource`: run directories and any OpenCLIP models, each spelled as in
:func:`~.inputs.parse_model_spec`) on one data root, concatenates their tidy tables (``model`` column
first) into ``<out>/compare/`` and draws the figures from those tables only:

* ``eval``: zero-shot accuracy per eval domain and class subset (:func:`training.evaluate.
  evaluate_source`; a run at its latest checkpoint) -> ``zero_shot.csv``; effective robustness
  (Fang et al. 2022) of every model: per eval domain, a line ``logit(held-out top-1) = a + b *
  logit(seen top-1)`` fit over all compared models, and each model's distance above it
  (:func:`domainlens.report.effective_robustness`, every compared model a baseline point;
  NaN with fewer than two models) -> ``robustness.csv``; figure ``heldout_accuracy.png``
  (held-out top-1 per model and domain, grouped bars).
* ``cka``: layerwise cross-domain CKA (:func:`.cka.cka_run`) -> ``cka.csv``; figure
  ``cka_by_layer.png`` (mean CKA over domain pairs per layer, one line per model, on relative
  depth so towers of different depth share an axis; one panel per class subset and kernel).

Each model's own outputs go to ``<out>/models/<model>/``; activations are cached in
``<out>/cache/activations`` (keyed by the weights and images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from domainlens.experiments.cka import CKASettings
from domainlens.experiments.inputs import SPEC_HELP, ModelSource, write_table

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

ANALYSES: tuple[str, ...] = ("eval", "cka")
COMPARE_DIR = "compare"


@dataclass(frozen=True)
class CompareSettings:
    """Settings of :func:`compare_models`: ``analyses`` (of :data:`ANALYSES`), ``cka`` (the
    CKA settings of every model; references ``class-shuffle`` or none, the ones every source
    has), ``batch_size`` of the evaluation, ``progress``."""

    analyses: Sequence[str] = ANALYSES
    cka: CKASettings = CKASettings(references=("class-shuffle",))
    batch_size: int = 256
    progress: bool = True

    def validate(self) -> CompareSettings:
        """Raise ``ValueError`` naming a bad value; return ``self``."""
        from training.util.validate import check_choices

        if not check_choices("analyses", self.analyses, ANALYSES):
            raise ValueError(f"analyses: none given; expected values from {list(ANALYSES)}")
        self.cka.validate()
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        return self


def model_folder(source: ModelSource) -> str:
    """The folder name of one model's own outputs (``<out>/models/<folder>``): a run's name,
    else the name with its pretrained tag or weights file's stem."""
    text = Path(source.source).name if source.is_run else str(source.source)
    if source.pretrained is not None:
        text += "-" + (Path(source.pretrained).stem if Path(source.pretrained).suffix
                       else source.pretrained)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def compare_models(
    sources: Sequence[ModelSource], data_root: str | Path, out: str | Path,
    settings: CompareSettings | None = None, *, domains: Sequence[str] | None = None,
    device: str = "cpu",
) -> dict[str, Path]:
    """Run ``settings.analyses`` over ``sources`` on ``data_root`` (module docstring); returns
    ``{"zero_shot": csv, "robustness": csv, "heldout_accuracy": png, "cka": csv,
    "cka_by_layer": png}`` (those of the analyses run). Every source is checked before any
    work (:func:`~.inputs.check_source`); two sources with the same label are refused."""
    from .inputs import check_source

    settings = (settings or CompareSettings()).validate()
    if not sources:
        raise ValueError(f"no models to compare; give one or more of: {SPEC_HELP}")
    out = Path(out)
    for source in sources:
        check_source(source, data_root=data_root, out=out, references=settings.cka.references)
    folders = [model_folder(s) for s in sources]
    twice = sorted({f for f in folders if folders.count(f) > 1})
    if twice:
        raise ValueError(f"models {twice} are given twice; compare distinct models")
    folder = out / COMPARE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if "eval" in settings.analyses:
        written |= _compare_eval(sources, data_root, out, folder, settings, domains, device)
    if "cka" in settings.analyses:
        written |= _compare_cka(sources, data_root, out, folder, settings, domains, device)
    return written


def _check_labels(tables: list[pd.DataFrame], sources: Sequence[ModelSource]) -> None:
    labels = [str(t["model"].iloc[0]) for t in tables if len(t)]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"models {twice} appear twice among {[s.describe() for s in sources]}; "
                         "compare distinct models")


def _compare_eval(sources: Sequence[ModelSource], data_root: str | Path, out: Path, folder: Path,
                  settings: CompareSettings, domains: Sequence[str] | None,
                  device: str) -> dict[str, Path]:
    """Zero-shot accuracy of every model, effective robustness and the accuracy figure."""
    import pandas as pd

    from interp.plots import save_figure
    from training.evaluate import evaluate_source

    tables = []
    for source in sources:
        run = source.is_run
        table = evaluate_source(
            source.source, source.pretrained, data_root=data_root, heldout=source.heldout,
            out=None if run else out / "models" / model_folder(source), domains=domains,
            batch_size=settings.batch_size, device=device, progress=settings.progress,
            epochs=-1 if run else None)
        tables.append(table)
    _check_labels(tables, sources)
    accuracy = pd.concat(tables, ignore_index=True)
    written = {"zero_shot": write_table(folder / "zero_shot.csv", accuracy)}
    written["robustness"] = write_table(folder / "robustness.csv", robustness_table(accuracy))
    written["heldout_accuracy"] = save_figure(plot_accuracy(accuracy),
                                              folder / "heldout_accuracy.png")
    return written


def robustness_table(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Effective robustness of every model per eval domain from an accuracy table
    (``zero_shot.csv``): columns model, eval_domain, seen_top1, heldout_top1, logit_seen,
    logit_heldout, predicted, robustness (module docstring)."""
    from domainlens.report import effective_robustness

    top1 = accuracy[(accuracy["metric"] == "top1")
                    & accuracy["class_name"].fillna("").astype(str).eq("")]
    wide = top1.pivot_table(index=["model", "eval_domain"], columns="class_subset",
                            values="value").reset_index()
    if wide.empty or not {"seen", "held-out"} <= set(wide.columns):
        return wide.iloc[:0]
    points = wide.rename(columns={"seen": "seen_top1", "held-out": "heldout_top1"})
    # every compared model is a point of the baseline line, one line per eval domain
    points = points.assign(setup="natural-only", kind="clip", test_domain=points["eval_domain"])
    points, _ = effective_robustness(points, fit="per-domain")
    keep = ["model", "eval_domain", "seen_top1", "heldout_top1", "logit_seen", "logit_heldout",
            "predicted", "robustness"]
    return points[keep].reset_index(drop=True)


def _compare_cka(sources: Sequence[ModelSource], data_root: str | Path, out: Path, folder: Path,
                 settings: CompareSettings, domains: Sequence[str] | None,
                 device: str) -> dict[str, Path]:
    """Cross-domain CKA of every model, concatenated, and the per-layer figure."""
    import pandas as pd

    from interp.plots import save_figure

    from .cka import cka_run

    tables = []
    for source in sources:
        written = cka_run(source, settings.cka, data_root=data_root, domains=domains,
                          cache_dir=out / "cache" / "activations", device=device,
                          out=out / "models" / model_folder(source) / "cka")
        tables.append(pd.read_csv(written["table"]))
    _check_labels(tables, sources)
    cka = pd.concat(tables, ignore_index=True)
    written = {"cka": write_table(folder / "cka.csv", cka)}
    written["cka_by_layer"] = save_figure(plot_cka_per_model(cka), folder / "cka_by_layer.png")
    return written


def plot_accuracy(accuracy: pd.DataFrame, subset: str = "held-out") -> Figure:
    """Grouped bars from an accuracy table: ``subset`` top-1 per eval domain (groups) and
    model (bars)."""
    import numpy as np
    from matplotlib.figure import Figure

    rows = accuracy[(accuracy["metric"] == "top1") & (accuracy["class_subset"] == subset)
                    & accuracy["class_name"].fillna("").astype(str).eq("")]
    wide = rows.pivot_table(index="eval_domain", columns="model", values="value", sort=False)
    fig = Figure(figsize=(1.2 + 1.1 * max(len(wide), 1) * max(len(wide.columns), 1) ** 0.5, 3.2))
    ax = fig.add_subplot()
    width = 0.8 / max(len(wide.columns), 1)
    x = np.arange(len(wide))
    for k, model in enumerate(wide.columns):
        ax.bar(x + (k - (len(wide.columns) - 1) / 2) * width, wide[model].to_numpy(), width,
               label=str(model))
    ax.set_xticks(x, list(wide.index))
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"{subset} top-1")
    ax.set_title(f"zero-shot {subset} top-1 per model and domain")
    ax.legend(fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def plot_cka_per_model(cka: pd.DataFrame) -> Figure:
    """From a concatenated CKA table (measured rows): mean CKA over domain pairs per layer,
    one line per model on relative depth (layer index / last index), one panel per class
    subset and kernel."""
    from matplotlib.figure import Figure

    measured = cka[cka["reference"] == "none"] if "reference" in cka.columns else cka
    panels = list(measured.groupby(["class_subset", "kernel"], sort=False))
    fig = Figure(figsize=(4.2 * max(len(panels), 1), 3.2))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for ax, ((subset, kernel), part) in zip(axes, panels, strict=False):
        for model, rows in part.groupby("model", sort=False):
            mean = rows.groupby("layer_index")["value"].mean()
            depth = mean.index.to_numpy() / max(mean.index.max(), 1)
            ax.plot(depth, mean.to_numpy(), marker="o", label=str(model))
        ax.set_xlabel("relative depth (input -> embedding)")
        ax.set_ylabel(f"mean {kernel} CKA over domain pairs")
        ax.set_title(f"{subset} classes")
        ax.legend(fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


__all__ = ["ANALYSES", "CompareSettings", "compare_models", "model_folder", "plot_accuracy", "plot_cka_per_model", "robustness_table"]
