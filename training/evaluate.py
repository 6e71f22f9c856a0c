"""Zero-shot evaluation of a run: every epoch checkpoint on the test split of every domain.

A CLIP run is scored by zero-shot classification over all classes of the data root with the
prompt ensemble of :mod:`training.zeroshot`; the supervised baseline by its linear head over
the same classes. The result is one tidy table (``<run>/eval/zero_shot.csv``), one row per
measurement, columns :data:`EVAL_COLUMNS`:

* ``class_subset`` ``held-out`` (the run's held-out classes C2), ``seen`` (C1) or ``all``;
* ``metric`` ``top1`` (over images), ``top1_balanced`` (mean of per-class accuracies) or
  ``class_top1`` (one class's accuracy; ``class_name`` names it);
* ``n_images`` the number of test images the value is computed on.

The paper's headline is ``top1`` on ``held-out`` where ``eval_domain == test_domain``.
A learning-curve figure (``<run>/eval/learning_curve.png``) is drawn from that table only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoints as ckpt
from .domainnet import load_index
from .domains import DOMAINS
from .imagecache import TensorTransform, load_images
from .models import image_size, preprocess_stats, tokenizer_for
from .runinfo import read_run_info
from .zeroshot import DEFAULT_TEMPLATES, class_text_embeddings, class_texts, zero_shot_logits

EVAL_COLUMNS: tuple[str, ...] = (
    "run", "setup", "test_domain", "seed", "epoch", "eval_domain", "class_subset",
    "class_name", "metric", "value", "n_images",
)
EVAL_DIR = "eval"
TABLE_FILE = "zero_shot.csv"
FIGURE_FILE = "learning_curve.png"
PREDICTIONS_FILE = "predictions.csv"


def _text_cache_key(path: Path, texts: Sequence[str], templates: Sequence[str]) -> str:
    from .util.files import digest

    stat = path.stat()
    return digest(str(path), stat.st_size, stat.st_mtime_ns, list(texts), list(templates))


def class_weights(
    loaded: ckpt.LoadedModel,
    classes: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    cache_dir: Path | None = None,
) -> torch.Tensor | None:
    """``(C, D)`` zero-shot class embeddings of a CLIP checkpoint (``None`` for a supervised
    model); cached in ``cache_dir`` under a key of the checkpoint, classes and templates."""
    if loaded.kind == "supervised":
        return None
    texts = class_texts(classes)
    cache = None
    if cache_dir is not None:
        key = _text_cache_key(loaded.path, texts, templates)
        cache = cache_dir / f"text_epoch_{loaded.epoch}_{key}.pt"
        if cache.is_file():
            return torch.load(cache, weights_only=True)
    weights = class_text_embeddings(
        loaded.model, tokenizer_for(loaded.model_config), texts, templates
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        ckpt.save_checkpoint(cache, weights)
    return weights


@torch.no_grad()
def predict(
    loaded: ckpt.LoadedModel,
    images: torch.Tensor,
    weights: torch.Tensor | None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Logits ``(N, C)`` for ``(N, 3, S, S)`` uint8 images: zero-shot cosines against
    ``weights`` for a CLIP, the linear head's outputs for the supervised baseline."""
    mean, std = preprocess_stats(loaded.model)
    transform = TensorTransform(mean, std, augment=None)
    model = loaded.model.to(device).eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = transform(images[start:start + batch_size]).to(device)
        if weights is None:
            out.append(model(x).float().cpu())
        else:
            out.append(zero_shot_logits(model.encode_image(x), weights.to(device)).cpu())
    return torch.cat(out)


def score(
    labels: np.ndarray,
    preds: np.ndarray,
    classes: Sequence[str],
    heldout: Sequence[str],
) -> list[dict]:
    """Accuracy rows for one (epoch, eval domain): ``class_subset``, ``class_name``,
    ``metric``, ``value``, ``n_images`` (see module docstring). Classes without test
    images are skipped."""
    held = {classes.index(c) for c in heldout}
    rows: list[dict] = []
    per_class: dict[int, float] = {}
    for label in np.unique(labels):
        mask = labels == label
        per_class[int(label)] = float((preds[mask] == label).mean())
        rows.append({
            "class_subset": "held-out" if int(label) in held else "seen",
            "class_name": classes[int(label)], "metric": "class_top1",
            "value": per_class[int(label)], "n_images": int(mask.sum()),
        })
    for subset in ("held-out", "seen", "all"):
        if subset == "all":
            chosen = set(per_class)
        elif subset == "held-out":
            chosen = {c for c in per_class if c in held}
        else:
            chosen = {c for c in per_class if c not in held}
        if not chosen:
            continue
        mask = np.isin(labels, sorted(chosen))
        rows.append({
            "class_subset": subset, "class_name": "", "metric": "top1",
            "value": float((preds[mask] == labels[mask]).mean()), "n_images": int(mask.sum()),
        })
        rows.append({
            "class_subset": subset, "class_name": "", "metric": "top1_balanced",
            "value": float(np.mean([per_class[c] for c in sorted(chosen)])),
            "n_images": int(mask.sum()),
        })
    return rows


def evaluate_run(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    epochs: int | Sequence[int] | None = None,
    batch_size: int = 256,
    domains: Sequence[str] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    predictions: bool = False,
    figure: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Score every (or the given) epoch checkpoint of a run; write table and figure.

    Args:
        run_dir: a training run directory.
        data_root: DomainNet-format root (default: the mixture manifest's ``data_root``).
        epochs: checkpoint epochs to score (default all; ``-1`` = latest).
        batch_size: images per forward.
        domains: domains to score (default: every domain with a test split).
        templates: prompt templates (default: the paper's 86).
        cache_dir: keep decoded test images in a memmap there (reusable across runs).
        device: where to run the model.
        predictions: also write per-image predictions to ``<run>/eval/predictions.csv``
            (columns epoch, eval_domain, path, label, pred).
        figure: draw ``<run>/eval/learning_curve.png``.
        progress: show progress bars.

    Returns:
        The tidy table (columns :data:`EVAL_COLUMNS`) as written to ``<run>/eval/zero_shot.csv``:
        the rows just computed merged into the rows already there (rows of the (epoch,
        eval domain) pairs scored now replace the old ones; see :func:`merge_tables`).
        ``table.attrs`` holds ``evaluated_epochs`` and ``evaluated_domains``.

    Raises ``ValueError`` for a checkpoint with a NaN or infinite weight (a diverged run:
    its argmax would score class 0 as if it were a prediction), before anything is written.
    """
    from tqdm.auto import tqdm

    from .models import nonfinite_tensors
    from .train import pick_device
    from .util.files import write_csv

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    device = pick_device(device) if isinstance(device, str) else device  # "tpu": one line
    chosen = ckpt.resolve_epochs(run_dir, epochs)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spec = read_run_info(run_dir, data_root)
    spec.require_data()
    info = spec.run_json
    trained_on = info.get("class_names") if info.get("kind") == "supervised" else None
    if trained_on and list(trained_on) != list(spec.classes):
        raise ValueError(
            f"the supervised run {run_dir} was trained on {len(trained_on)} classes that "
            f"differ from the {len(spec.classes)} classes of {spec.data_root}"
        )
    index = load_index(spec.data_root, domains=domains, splits=("test",))
    if index.empty:
        raise ValueError(f"no test images under {spec.data_root} for domains {domains}")
    eval_dir = run_dir / EVAL_DIR
    eval_dir.mkdir(parents=True, exist_ok=True)
    size = image_size(ckpt.read_model_config(run_dir))
    images = load_images(
        index["path"].tolist(), size, cache_dir=cache_dir, fallback_dir=eval_dir / "cache",
        progress=progress, desc="decoding test images",
    )
    labels = index["label"].to_numpy()
    present = [d for d in DOMAINS if d in set(index["domain"])]
    rows, pred_frames = [], []
    for epoch in tqdm(chosen, desc=f"eval {run_dir.name}", unit="ckpt", disable=not progress):
        loaded = ckpt.load_run_model(run_dir, epoch, device=device)
        bad = nonfinite_tensors(loaded.model)
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise ValueError(
                f"checkpoint {loaded.path} holds non-finite weights ({', '.join(bad[:3])}{more}): "
                "a diverged run cannot be scored"
            )
        if loaded.kind == "supervised" and loaded.model.num_classes != len(spec.classes):
            raise ValueError(
                f"supervised run {run_dir} predicts {loaded.model.num_classes} classes, the "
                f"data root {spec.data_root} has {len(spec.classes)}"
            )
        weights = class_weights(loaded, spec.classes, templates, eval_dir / "text_cache")
        preds = predict(loaded, images, weights, batch_size, device).argmax(dim=1).numpy()
        for domain in present:
            mask = (index["domain"] == domain).to_numpy()
            for row in score(labels[mask], preds[mask], spec.classes, spec.heldout):
                rows.append({"epoch": epoch, "eval_domain": domain, **row})
        if predictions:
            pred_frames.append(pd.DataFrame({
                "epoch": epoch, "eval_domain": index["domain"], "path": index["path"],
                "label": labels, "pred": preds,
            }))
    table = pd.DataFrame(rows)
    table.insert(0, "run", run_dir.name)
    table.insert(1, "setup", spec.setup)
    table.insert(2, "test_domain", spec.test_domain or "")
    table.insert(3, "seed", spec.seed)
    table = table[list(EVAL_COLUMNS)]
    table = merge_tables(run_dir, eval_dir / TABLE_FILE, table, chosen, present)
    write_csv(eval_dir / TABLE_FILE, table)
    if predictions:
        new = pd.concat(pred_frames, ignore_index=True)
        write_csv(eval_dir / PREDICTIONS_FILE,
                  merge_tables(run_dir, eval_dir / PREDICTIONS_FILE, new, chosen, present))
    if figure:
        plot_learning_curve(table, eval_dir / FIGURE_FILE, n_classes=len(spec.classes))
    table.attrs["evaluated_epochs"] = list(chosen)
    table.attrs["evaluated_domains"] = list(present)
    return table


def merge_tables(
    run_dir: Path, path: Path, new: pd.DataFrame, epochs: Sequence[int], domains: Sequence[str]
) -> pd.DataFrame:
    """``new`` (rows of ``epochs`` x ``domains``) merged into the table already at ``path``.

    Old rows are kept for the (epoch, eval domain) pairs not scored now, if they still
    describe this run: same columns, and their checkpoint exists and is not newer than the
    table (a checkpoint rewritten after the evaluation makes its old rows stale). Sorted by
    epoch, then domain in canonical order, so a merged table reads like a fresh one.
    """
    if not path.is_file():
        return new.reset_index(drop=True)
    try:
        old = pd.read_csv(path, keep_default_na=False)  # class_name "" stays ""
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return new.reset_index(drop=True)  # unreadable: rewritten from the new rows
    if list(old.columns) != list(new.columns) or old.empty:
        return new.reset_index(drop=True)
    if "class_subset" in old.columns and "held-out" in set(new["class_subset"]):
        old = old.assign(class_subset=old["class_subset"].replace({"heldout": "held-out"}))
    written = path.stat().st_mtime_ns
    fresh = {
        int(e) for e in old["epoch"].unique()
        if ckpt.checkpoint_path(run_dir, int(e)).is_file()
        and ckpt.checkpoint_path(run_dir, int(e)).stat().st_mtime_ns <= written
    }
    redone = old["epoch"].isin(list(epochs)) & old["eval_domain"].isin(list(domains))
    old = old[~redone & old["epoch"].isin(sorted(fresh))]
    if old.empty:
        return new.reset_index(drop=True)
    for column in new.columns:  # numbers as numbers ("" -> NaN, e.g. an unknown seed)
        if pd.api.types.is_numeric_dtype(new[column]) and not pd.api.types.is_numeric_dtype(
                old[column]):
            old = old.assign(**{column: pd.to_numeric(old[column], errors="coerce")})
    merged = pd.concat([old, new], ignore_index=True)
    order = {d: i for i, d in enumerate(DOMAINS)}
    rank = merged["eval_domain"].map(order).fillna(len(order))
    merged = merged.assign(_rank=rank).sort_values(["epoch", "_rank"], kind="stable")
    return merged.drop(columns="_rank").reset_index(drop=True)


def plot_learning_curve(
    table: pd.DataFrame, path: str | Path, n_classes: int | None = None
) -> Path:
    """Top-1 per epoch from an evaluation table: one panel per class subset (held-out, seen),
    one line per eval domain, the test domain drawn bold. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    data = table[(table["metric"] == "top1") & (table["class_subset"] != "all")]
    subsets = [s for s in ("held-out", "seen") if s in set(data["class_subset"])]
    fig, axes = plt.subplots(1, max(1, len(subsets)), figsize=(5 * max(1, len(subsets)), 3.6),
                             sharey=True, squeeze=False)
    test_domain = str(table["test_domain"].iloc[0]) if len(table) else ""
    for ax, subset in zip(axes[0], subsets, strict=False):
        part = data[data["class_subset"] == subset]
        for domain, group in part.groupby("eval_domain", sort=False):
            group = group.sort_values("epoch")
            bold = domain == test_domain
            ax.plot(group["epoch"], group["value"], marker="o", markersize=3,
                    linewidth=2.5 if bold else 1.0, alpha=1.0 if bold else 0.7,
                    label=f"{domain} (test)" if bold else domain)
        if n_classes:
            ax.axhline(1 / n_classes, color="grey", linestyle=":", linewidth=1, label="chance")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{subset} classes")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy")
    axes[0][-1].legend(fontsize=7, loc="best")
    run = str(table["run"].iloc[0]) if len(table) else ""
    fig.suptitle(run, fontsize=9)
    fig.tight_layout()
    from .util.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:  # the temp name has no image suffix: name the format
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


#: Columns of :func:`evaluate_source`'s table: the ``model`` column, then :data:`EVAL_COLUMNS`.
SOURCE_EVAL_COLUMNS: tuple[str, ...] = ("model", *EVAL_COLUMNS)


@torch.no_grad()
def evaluate_source(
    source: str | Path,
    pretrained: str | None = None,
    data_root: str | Path | None = None,
    heldout: Sequence[str] | None = None,
    out: str | Path | None = None,
    domains: Sequence[str] | None = None,
    batch_size: int = 256,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    epochs: int | Sequence[int] | None = None,
) -> pd.DataFrame:
    """Zero-shot evaluation of any model source (:func:`training.sources.open_model`).

    A run directory is scored by :func:`evaluate_run` (its ``epochs``, default all; the
    returned rows are those of the scored epochs; ``out`` unused);
    another source (``"RN50"`` + ``pretrained="openai"``, ``local-dir:DIR``, ...) is scored
    once, its images preprocessed by OpenCLIP's preprocess config of that model, on
    ``data_root`` with the ``heldout`` classes (default: the root's ``heldout_classes.txt``).
    Returns the tidy table (columns :data:`SOURCE_EVAL_COLUMNS`; ``setup``/``test_domain`` ""
    and ``seed``/``epoch`` empty for a non-run source), also written to
    ``<out>/zero_shot.csv`` when ``out`` is given. ``cache_dir``: OpenCLIP's download cache.
    """
    from tqdm.auto import tqdm

    from .sources import is_run_dir, open_model
    from .util.files import write_csv

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if is_run_dir(source):
        if pretrained is not None or heldout:
            raise ValueError(f"{str(source)!r} is a run directory: its weights and held-out "
                             "classes are its own (drop pretrained/heldout)")
        table = evaluate_run(source, data_root=data_root, epochs=epochs, domains=domains,
                             batch_size=batch_size, templates=templates, device=device,
                             progress=progress)
        scored = table.attrs.get("evaluated_epochs")
        if scored is not None:
            table = table[table["epoch"].isin(scored)].reset_index(drop=True)
        table.insert(0, "model", Path(source).name)
        return table
    if epochs is not None:
        raise ValueError(f"epochs apply to run directories only, not {str(source)!r}")
    if data_root is None:
        raise ValueError(f"evaluating {str(source)!r} needs a data root (--data)")
    loaded = open_model(source, pretrained, device=device, data_root=data_root, heldout=heldout,
                        cache_dir=cache_dir)
    info, pre = loaded.info, loaded.preprocess
    root = info.require_data()
    index = load_index(root, domains=domains, splits=("test",))
    if index.empty:
        raise ValueError(f"no test images under {root} for domains {domains}")
    weights = class_text_embeddings(loaded.model, loaded.tokenizer, class_texts(info.classes),
                                    templates, device=device)
    paths = index["path"].tolist()
    preds = []
    for start in tqdm(range(0, len(paths), batch_size), desc=f"eval {info.model}",
                      unit="batch", disable=not progress):
        pixels = torch.from_numpy(np.stack([pre.decode(p) for p in paths[start:start + batch_size]]))
        features = loaded.model.encode_image(pre.normalize(pixels).to(device))
        preds.append(zero_shot_logits(features, weights.to(device)).argmax(dim=1).cpu())
    pred = torch.cat(preds).numpy()
    labels = index["label"].to_numpy()
    rows = []
    for domain in [d for d in DOMAINS if d in set(index["domain"])]:
        mask = (index["domain"] == domain).to_numpy()
        for row in score(labels[mask], pred[mask], info.classes, info.heldout):
            rows.append({"model": info.model, "run": info.name, "setup": "", "test_domain": "",
                         "seed": None, "epoch": None, "eval_domain": domain, **row})
    table = pd.DataFrame(rows, columns=list(SOURCE_EVAL_COLUMNS))
    if out is not None:
        write_csv(Path(out) / TABLE_FILE, table)
    return table
