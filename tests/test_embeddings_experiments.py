"""domainlens.experiments.embeddings / features on the tiny trained run, and the
aligned-captions comparison on two tiny runs trained here."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import torch_threads

from domainlens import layout
from domainlens.experiments.embeddings import (
    EmbeddingSettings,
    aligned_captions_run,
    embeddings_run,
    heldout_accuracy,
)
from domainlens.experiments.features import FeatureSettings, features_run

QUIET = dict(progress=False)


def test_embeddings_run_writes_tables_with_references(trained_run, tmp_path) -> None:
    settings = EmbeddingSettings(folds=3, umap=False, **QUIET)
    written = embeddings_run(trained_run, settings=settings, out=tmp_path, cache_dir="")
    dist = pd.read_csv(written["separation"])
    assert set(dist["reference"]) == {"none", "init", "domain-shuffle", "class-shuffle"}
    assert set(dist["class_subset"]) == {"held-out", "seen", "all"}
    assert set(dist["domain_a"]) == {"real", "sketch"}
    assert (dist["run"] == trained_run.name).all()
    assert set(dist[dist["reference"] == "init"]["epoch"]) == {0}
    probe = pd.read_csv(written["probe"])
    assert set(probe["reference"]) == {"none", "init", "domain-shuffle"}
    assert probe["value"].between(0, 1).all()
    assert (tmp_path / layout.SEPARATION_FIGURE).is_file()
    assert (tmp_path / layout.DOMAIN_PROBE_FIGURE).is_file()
    dims = pd.read_csv(written["dimensions"])
    assert len(dims[(dims["reference"] == "none")]) == 2 * 32  # 2 domains x 32 dims


def test_embeddings_run_refuses_bad_input(trained_run, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown domain\(s\) \['drawing'\]"):
        embeddings_run(trained_run, domains=["real", "drawing"], out=tmp_path)
    with pytest.raises(ValueError, match="too few images for a 7-fold domain probe"):
        embeddings_run(trained_run, settings=EmbeddingSettings(folds=7, max_per_class=1,
                                                               umap=False, **QUIET),
                       out=tmp_path, cache_dir="")
    with pytest.raises(ValueError, match="references: unknown"):
        embeddings_run(trained_run, settings=EmbeddingSettings(references=["random"]))
    assert not (tmp_path / layout.SEPARATION_TABLE).exists()


def base_root(shapes_root: Path, tmp_path: Path) -> Path:
    """A copy of the shapes root with a base set (some real training images, captioned)."""
    root = tmp_path / "data"
    shutil.copytree(shapes_root, root)
    lines = ["filepath\ttitle"]
    for line in (root / "real_train.txt").read_text().split("\n")[::10]:
        if line.strip():
            rel = line.split()[0]
            lines.append(f"{rel}\ta photo of a {rel.split('/')[1]}.")
    (root / "base.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_features_run_per_layer(trained_run, shapes_root, tmp_path) -> None:
    from interp.hooked.runs import load_hooked_run

    root = base_root(shapes_root, tmp_path)
    layer = load_hooked_run(trained_run).model.layers()[-2].name
    settings = FeatureSettings(sites=(layer, "hook_image_embed"), lr=3e-3, sae_batch_size=64,
                               epochs=3, top=5, ks=(2, 4), references=("init", "class-shuffle"),
                               **QUIET)
    written = features_run(trained_run, data_root=root, settings=settings, out=tmp_path / "f",
                           cache_dir="")
    quality = pd.read_csv(written["quality"])
    assert set(quality["site"]) == {layer, "hook_image_embed"}
    assert set(quality["split"]) == {"train", "test"}
    assert set(quality["reference"]) == {"none", "init"}
    assert set(quality[quality["reference"] == "init"]["epoch"]) == {0}
    # train split of both domains (2 x 6 classes x 20) plus the base set (12 images)
    assert quality[quality["split"] == "train"]["n_images"].unique().tolist() == [240 + 12]
    assert quality["explained_variance"].notna().all() and (quality["l0"] >= 0).all()
    scores = pd.read_csv(written["scores"])
    assert set(scores["domain"]) == {"real", "sketch"}  # every domain's row, not one fixed one
    assert scores["value"].between(0, 1).all()
    assert set(scores["reference"]) == {"none", "init", "class-shuffle"}
    summary = pd.read_csv(written["summary"])
    assert set(summary["class_subset"]) == {"held-out", "seen", "all"}
    assert (tmp_path / "f" / layout.SHARING_FIGURE).is_file()
    assert (tmp_path / "f" / layout.SHARING_BY_LAYER).is_file()
    assert (tmp_path / "f" / layout.sae_file("hook_image_embed")).is_file()


def test_features_run_refuses_bad_input(trained_run, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="base.tsv"):  # the shapes root has no base set
        features_run(trained_run, settings=FeatureSettings(**QUIET), out=tmp_path)
    with pytest.raises(ValueError, match=r"top=200 is larger than the number of latents \(128\)"):
        features_run(trained_run, settings=FeatureSettings(include_base=False, top=200, epochs=1,
                                                           **QUIET), out=tmp_path, cache_dir="")
    with pytest.raises(ValueError, match="k must be"):
        FeatureSettings(ks=(0,)).validate()


# ---------------------------------------------------------------- aligned captions
@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory, shapes_root, tiny_rn_json) -> tuple[Path, Path]:
    """Two tiny runs on the same rows and seed: domain-word captions vs aligned ones."""
    from shapes import write_mixture

    from training.evaluate import evaluate_run
    from training.train import TrainConfig, train_clip

    base = tmp_path_factory.mktemp("twins")
    runs = []
    for style in ("domain", "aligned"):
        tsv = write_mixture(shapes_root, base / f"{style}.tsv", name=f"toy-{style}", limit=6)
        if style == "aligned":  # no domain word: "an image of a circle."
            rows = pd.read_csv(tsv, sep="\t")
            rows["title"] = rows["title"].str.replace(r"^a \w+ of", "an image of", regex=True)
            rows.to_csv(tsv, sep="\t", index=False)
        manifest = json.loads(tsv.with_suffix(".json").read_text())
        manifest["spec"] = {**manifest["spec"], "setup": "cg-high", "captions": style}
        manifest["content_hash"] = hashlib.sha256(tsv.read_bytes()).hexdigest()
        tsv.with_suffix(".json").write_text(json.dumps(manifest))
        with torch_threads(1):
            run = train_clip(TrainConfig(mixture=tsv, out=base / f"run-{style}",
                                         model=str(tiny_rn_json), epochs=2, batch_size=32,
                                         lr=3e-3, progress=False))
            evaluate_run(run, epochs=[2], templates=("a photo of a {}.",), figure=False,
                         progress=False)
        runs.append(run)
    yield runs[0], runs[1]
    shutil.rmtree(base, ignore_errors=True)  # CI disks may be small


def test_aligned_captions_side_by_side(twin_runs, tmp_path) -> None:
    standard, aligned = twin_runs
    settings = EmbeddingSettings(folds=3, **QUIET)
    written = aligned_captions_run(standard, aligned, settings=settings, out=tmp_path,
                                   cache_dir="")
    table = pd.read_csv(written["table"])
    assert set(table["variant"]) == {"standard", "aligned"}
    assert set(table["quantity"]) == {"heldout_top1", "domain_probe",
                                      "domain_mean_distance_to_sketch",
                                      "class_mean_distance_to_sketch"}
    acc = table[(table["quantity"] == "heldout_top1") & (table["variant"] == "aligned")]
    expected = heldout_accuracy(aligned).set_index("eval_domain")["value"]
    assert np.allclose(acc.set_index("domain")["value"].loc[expected.index], expected)
    assert (tmp_path / layout.ALIGNED_FIGURE).is_file()


def test_aligned_captions_refuses_non_twins(twin_runs, trained_run, tmp_path) -> None:
    standard, aligned = twin_runs
    with pytest.raises(ValueError, match="expected a standard run then an aligned-captions run"):
        aligned_captions_run(aligned, standard, out=tmp_path)
    with pytest.raises(ValueError, match="not twins: setup"):
        aligned_captions_run(trained_run, aligned, out=tmp_path)


# ---------------------------------------------------------------- CLI
def test_cli_embeddings_and_features(trained_run, tmp_path, capsys) -> None:
    from domainlens.cli import main

    out = tmp_path / "emb"
    assert main(["embeddings", str(trained_run), "--no-umap", "--folds", "3", "--references",
                 "--quiet", "--no-cache", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "domain probe" in printed and (out / layout.DOMAIN_PROBE).is_file()
    assert set(pd.read_csv(out / layout.SEPARATION_TABLE)["reference"]) == {"none"}
    assert main(["features", str(trained_run), "--no-base", "--epochs", "2", "--top", "5",
                 "--ks", "2", "4", "--quiet", "--no-cache", "--out", str(tmp_path / "f")]) == 0
    assert "sharing score per domain" in capsys.readouterr().out
    # bad input: one line, exit code 2
    assert main(["features", str(trained_run), "--no-base", "--ks", "0", "--quiet"]) == 2
    assert "k must be" in capsys.readouterr().err
    assert main(["embeddings", str(trained_run), "--domains", "drawing", "real"]) == 2
    assert "unknown domain(s) ['drawing']" in capsys.readouterr().err


def test_embeddings_run_umap_pictures(trained_run, tmp_path, monkeypatch) -> None:
    """The UMAP plumbing (both pictures, table, figure keys), with the projection replaced by
    its subsample and a fixed map (the real umap-learn is tested in test_embeddings.py)."""
    import interp.embeddings.projection as projection

    def fake(x, domains, classes=None, *, per_domain, seed, exclude=(), **_):
        rows = projection.subsample_per_domain(domains, per_domain, seed, exclude)
        return pd.DataFrame({"row": rows, "domain": np.asarray(domains)[rows],
                             "class_name": np.asarray(classes)[rows], "x": x[rows, 0],
                             "y": x[rows, 1]})

    monkeypatch.setattr(projection, "umap_coordinates", fake)
    settings = EmbeddingSettings(folds=3, references=(), umap_per_domain=5, umap_without="real",
                                 **QUIET)
    written = embeddings_run(trained_run, settings=settings, out=tmp_path, cache_dir="")
    assert written["umap_figure"] == tmp_path / layout.UMAP_FIGURE
    assert written["umap_no_real"] == tmp_path / layout.umap_without("real")
    assert all(p.is_file() for p in written.values())
    coords = pd.read_csv(written["umap"])
    assert coords.groupby("picture")["domain"].apply(set).to_dict() == {
        "all": {"real", "sketch"}, "no_real": {"sketch"}}
    assert (coords.groupby(["picture", "domain"]).size() == 5).all()
