"""Every analysis command on any model source, and ``domainlens compare`` over several.

A randomly initialised OpenCLIP model is saved as a run directory (OpenCLIP-format checkpoint)
and its weights given back as ``--pretrained FILE``: both must give the same numbers. Nothing
downloads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_sources
import torch
from PIL import Image
from test_sources import CFG, NAME, OTHER_STATS, write_local_dir

from domainlens.cli import main
from domainlens.experiments.inputs import ImageSettings, ModelSource, load_inputs, parse_model_spec
from interp.hooked.images import ImageFileDataset
from training.checkpoints import checkpoint_path

# test_sources' fixtures: NAME registered with OpenCLIP (for the whole module), a run
# directory holding one random model at epoch 1
registered = test_sources.registered
trained = test_sources.trained
pytestmark = pytest.mark.usefixtures("registered")

#: Cheap CKA options shared by the commands below (6 classes, so the unbiased HSIC has rows).
CKA = ["--classes", "all", "--kernel", "linear", "--quiet"]


@pytest.fixture(scope="module")
def run_and_weights(trained) -> tuple[Path, Path, torch.nn.Module]:
    """The run directory of :func:`test_sources.trained`, its epoch-1 checkpoint file (the
    same weights, for ``--pretrained FILE``) and the model."""
    run, model = trained
    return run, checkpoint_path(run, 1), model


def _model_args(weights: Path, root: Path, out: Path) -> list[str]:
    return ["--model", NAME, "--pretrained", str(weights), "--data", str(root), "--out", str(out)]


def test_commands_give_the_same_numbers_from_a_run_and_from_its_weights_file(run_and_weights, shapes_root, tmp_path, capsys):
    run, weights, _ = run_and_weights
    label = f"{NAME}/epoch_1"
    # zero-shot accuracy
    assert main(["eval", str(run), "--epochs", "1", "--quiet"]) == 0
    assert main(["eval", *_model_args(weights, shapes_root, tmp_path / "eval"), "--quiet"]) == 0
    from_run = pd.read_csv(run / "eval" / "zero_shot.csv")
    from_file = pd.read_csv(tmp_path / "eval" / "zero_shot.csv")
    assert from_file.columns[0] == "model" and set(from_file["model"]) == {label}
    key = ["eval_domain", "class_subset", "class_name", "metric"]
    merged = from_file.merge(from_run[from_run["epoch"] == 1], on=key, suffixes=("", "_run"))
    assert len(merged) == len(from_file) > 0
    np.testing.assert_allclose(merged["value"], merged["value_run"])
    # a CKA table (with its class-shuffle reference)
    assert main(["cka", str(run), "--out", str(tmp_path / "cka-run"), "--references",
                 "class-shuffle", *CKA]) == 0
    assert main(["cka", *_model_args(weights, shapes_root, tmp_path / "cka-file"), *CKA]) == 0
    cka_run = pd.read_csv(tmp_path / "cka-run" / "cka.csv")
    cka_file = pd.read_csv(tmp_path / "cka-file" / "cka.csv")
    assert cka_run.columns[0] == cka_file.columns[0] == "model"
    assert set(cka_run["model"]) == {run.name} and set(cka_file["model"]) == {label}
    assert set(cka_file["reference"]) == {"none", "class-shuffle"}  # no init: not a run
    assert len(cka_file) == len(cka_run) > 0
    np.testing.assert_allclose(cka_file["value"], cka_run["value"], atol=1e-6)
    assert cka_file["epoch"].isna().all() and set(cka_run["epoch"]) == {1}
    assert "mean CKA over domain pairs (" + label + ")" in capsys.readouterr().out


def test_embeddings_patch_and_circuits_accept_a_weights_file(run_and_weights,
                                                             shapes_root, tmp_path):
    _, weights, _ = run_and_weights
    source = _model_args(weights, shapes_root, tmp_path / "emb")
    assert main(["embeddings", *source, "--no-umap", "--folds", "2", "--quiet"]) == 0
    probe = pd.read_csv(tmp_path / "emb" / "domain_probe.csv")
    assert probe.columns[0] == "model" and set(probe["model"]) == {f"{NAME}/epoch_1"}
    assert "init" not in set(probe["reference"])  # the default drops what needs a history
    out = tmp_path / "patch"
    assert main(["patch", *_model_args(weights, shapes_root, out), "--source", "real",
                 "--target", "sketch", "--max-per-class", "2", "--granularity", "--sites",
                 "layers", "--n-boot", "10", "--quiet"]) == 0
    summary = pd.read_csv(out / "patching_real_to_sketch.csv")
    assert summary.columns[0] == "model" and set(summary["reference"]) == {"none", "class-shuffle"}
    out = tmp_path / "circuits"
    assert main(["circuits", *_model_args(weights, shapes_root, out), "--classes", "star",
                 "circle", "--n-images", "2", "--n-boot", "10", "--quiet"]) == 0
    comparison = pd.read_csv(out / "comparison.csv")
    assert comparison.columns[0] == "model" and set(comparison["model"]) == {f"{NAME}/epoch_1"}


def test_openclip_preprocessing_reaches_the_analyses(run_and_weights, shapes_root, tmp_path):
    """A model whose preprocess config has another mean/std: the analyses feed it OpenCLIP's
    transform of its images, not our default normalisation."""
    _, _, model = run_and_weights
    folder = write_local_dir(tmp_path / "my-clip", model, OTHER_STATS)
    inputs = load_inputs(f"local-dir:{folder}", out_name="x", data_root=shapes_root,
                         out=tmp_path / "out", domains=["real", "sketch"], cache_dir="")
    run = inputs.run
    assert run.input_preprocess.mean == (0.5,) * 3 and run.info.is_run is False
    acts = inputs.activations(run, ["hook_image_embed"], ImageSettings(max_per_class=1, progress=False))
    paths = acts["real"].index["path"].tolist()
    transform = run.preprocess.transform()
    with torch.no_grad():
        theirs = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
        ours = torch.stack([ImageFileDataset(paths, 32)[i] for i in range(len(paths))])
        assert (theirs - ours).abs().max() > 0.1  # the inputs differ from ours ...
        torch.testing.assert_close(run.images(paths), theirs, atol=1e-5, rtol=0)
        # ... and the analysis saw OpenCLIP's inputs
        torch.testing.assert_close(acts["real"].acts["hook_image_embed"],
                                   model.encode_image(theirs), atol=1e-5, rtol=1e-5)
        assert (model.encode_image(ours) - model.encode_image(theirs)).abs().max() > 1e-3


@pytest.mark.parametrize("case", ["unknown-name", "garbage-weights", "missing-weights",
                                  "unhookable", "no-data", "no-out", "init-reference",
                                  "epoch", "pretrained-alone", "run-and-model"])
def test_source_errors_are_one_line_before_any_work(case, run_and_weights,
                                                    shapes_root, tmp_path, capsys):
    run, weights, _ = run_and_weights
    out = tmp_path / "out"
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"not a checkpoint")
    timm = tmp_path / "timm-clip"
    timm.mkdir()
    cfg = {**CFG, "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "image_size": 32}}
    (timm / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    where = ["--data", str(shapes_root), "--out", str(out)]
    argv, message = {
        "unknown-name": (["--model", "ViT-Q-99", *where], "unknown model 'ViT-Q-99'"),
        "garbage-weights": (["--model", NAME, "--pretrained", str(garbage), *where],
                            f"cannot load {NAME} with pretrained="),
        "missing-weights": (["--model", NAME, "--pretrained", str(tmp_path / "no.pt"), *where],
                            "no.pt' does not exist"),
        "unhookable": (["--model", f"local-dir:{timm}", *where],
                       "unsupported image tower TimmModel; supported: OpenCLIP's VisionTransformer"),
        "no-data": (["--model", NAME, "--pretrained", str(weights), "--out", str(out)],
                    f"--model {NAME} is not a run directory: give --data ROOT"),
        "no-out": (["--model", NAME, "--pretrained", str(weights), "--data", str(shapes_root)],
                   "give --out DIR"),
        "init-reference": (["--model", NAME, *where, "--references", "init,class-shuffle"],
                           "reference 'init' needs a training history"),
        "epoch": (["--model", NAME, *where, "--epoch", "1"], "epoch=1 applies to run directories"),
        "pretrained-alone": ([str(run), "--pretrained", str(weights)],
                             "--pretrained goes with --model NAME"),
        "run-and-model": ([str(run), "--model", NAME, *where], "not both"),
    }[case]
    assert main(["cka", *argv, *CKA]) == 2
    err = capsys.readouterr().err
    assert err.startswith("domainlens cka: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if case in ("no-data", "init-reference", "pretrained-alone", "run-and-model"):
        assert not out.exists()  # refused before loading anything or writing


def test_compare_writes_tables_with_both_models_and_figures(run_and_weights,
                                                            shapes_root, tmp_path, capsys):
    run, weights, _ = run_and_weights
    out = tmp_path / "cmp"
    label = f"{NAME}/epoch_1"
    assert main(["compare", "--models", str(run), f"{NAME}={weights}", "--data", str(shapes_root),
                 "--out", str(out), "--classes", "all", "--quiet"]) == 0
    folder = out / "compare"
    accuracy = pd.read_csv(folder / "zero_shot.csv")
    cka = pd.read_csv(folder / "cka.csv")
    robustness = pd.read_csv(folder / "robustness.csv")
    for table in (accuracy, cka, robustness):
        assert table.columns[0] == "model" and set(table["model"]) == {run.name, label}
    # the same weights: the same numbers under both labels
    key = ["eval_domain", "class_subset", "class_name", "metric"]
    by = {m: t.set_index(key)["value"].sort_index() for m, t in accuracy.groupby("model")}
    pd.testing.assert_series_equal(by[run.name], by[label])
    cka = cka[cka["reference"] == "none"]
    key = ["site", "domain_a", "domain_b", "class_subset", "kernel"]
    by = {m: t.set_index(key)["value"].sort_index() for m, t in cka.groupby("model")}
    np.testing.assert_allclose(by[label].to_numpy(), by[run.name].to_numpy(), atol=1e-6)
    # identical points lie on any line through them: robustness 0 where the line is defined
    np.testing.assert_allclose(robustness["robustness"].dropna(), 0.0, atol=1e-6)
    for figure in ("heldout_accuracy.png", "cka_by_layer.png"):
        assert (folder / figure).stat().st_size > 0
    assert (out / "models" / f"{NAME}-epoch_1" / "zero_shot.csv").is_file()
    assert label in capsys.readouterr().out
    # twice the same model is refused before any work
    assert main(["compare", "--models", str(run), str(run), "--data", str(shapes_root),
                 "--out", str(tmp_path / "twice"), "--quiet"]) == 2
    assert "given twice" in capsys.readouterr().err and not (tmp_path / "twice").exists()


def test_model_specs_of_compare(run_and_weights, tmp_path):
    run, weights, _ = run_and_weights
    assert parse_model_spec(str(run)) == ModelSource(str(run))
    assert parse_model_spec("RN50-quickgelu:openai", ["star"]) == ModelSource(
        "RN50-quickgelu", "openai", ("star",))
    assert parse_model_spec(f"ViT-B-32={weights}") == ModelSource("ViT-B-32", str(weights))
    assert parse_model_spec(f"local-dir:{tmp_path}") == ModelSource(f"local-dir:{tmp_path}")
    assert parse_model_spec("hf-hub:org/repo") == ModelSource("hf-hub:org/repo")
    assert parse_model_spec("RN50") == ModelSource("RN50")
    with pytest.raises(ValueError, match="expected a run directory, NAME:TAG"):
        parse_model_spec("RN50=")
