"""Zero-shot heads and run evaluation: accuracy, hand computation, tidy table, CLI, errors."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from conftest import torch_threads
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from PIL import Image
from shapes import SHAPE_CLASSES, SHAPE_HELDOUT, write_mixture

from domainlens.cli import main
from interp.hooked.head import ZeroShotHead
from training import checkpoints as ckpt
from training.evaluate import EVAL_COLUMNS, evaluate_run
from training.models import create_clip, tokenizer_for
from training.supervised import train_supervised
from training.train import TrainConfig, train_clip
from training.zeroshot import (
    DEFAULT_TEMPLATES,
    class_text_embeddings,
    zero_shot_logits,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def evaluated(trained_run) -> pd.DataFrame:
    """The trained toy run scored at epochs 0, 10 and 20, with per-image predictions."""
    return evaluate_run(trained_run, epochs=[0, 10, 20], predictions=True, progress=False)


# ----------------------------------------------------------------------------------------------
# zero-shot heads


def test_templates_are_the_papers_ensemble():
    assert len(DEFAULT_TEMPLATES) == 86
    assert DEFAULT_TEMPLATES[0] == "a bad photo of a {}."
    assert DEFAULT_TEMPLATES[-1] == "a quickdraw of a {}."
    assert all(t.count("{}") == 1 for t in DEFAULT_TEMPLATES)


def test_class_text_embeddings_average_normalised_prompts():
    torch.manual_seed(0)
    model, cfg = create_clip("tiny-rn")
    model.eval()
    tokenizer = tokenizer_for(cfg)
    templates = ("a photo of a {}.", "a sketch of the {}.", "{}")
    weights = class_text_embeddings(model, tokenizer, ["cat", "traffic light"], templates,
                                    batch_size=2)
    assert weights.shape == (2, cfg["embed_dim"])
    torch.testing.assert_close(weights.norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        raw = model.encode_text(tokenizer([t.format("traffic light") for t in templates]))
    e = raw / raw.norm(dim=-1, keepdim=True)
    expected = e.mean(0) / e.mean(0).norm()
    torch.testing.assert_close(weights[1], expected, atol=1e-6, rtol=0)
    # averaging unnormalised prompt embeddings gives another vector: the check can fail
    assert not torch.allclose(weights[1], raw.mean(0) / raw.mean(0).norm(), atol=1e-4)
    with pytest.raises(ValueError, match="exactly one"):
        class_text_embeddings(model, tokenizer, ["cat"], ["no slot"])
    # the one zero-shot head (interp.hooked.head.ZeroShotHead) uses the same ensemble
    head = ZeroShotHead.from_texts(model, tokenizer, ["cat", "traffic_light"], templates)
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(head(model.encode_image(images)),
                                   zero_shot_logits(model.encode_image(images), weights))


# ----------------------------------------------------------------------------------------------
# evaluating a run


def test_trained_toy_model_is_well_above_chance(evaluated):
    top1 = evaluated[(evaluated["metric"] == "top1") & (evaluated["class_subset"] == "all")]
    by = top1.set_index(["epoch", "eval_domain"])["value"]
    chance = 1 / len(SHAPE_CLASSES)
    for domain in ("real", "sketch"):
        assert by[(20, domain)] >= 2.5 * chance, by
        assert by[(0, domain)] < by[(20, domain)]


def test_zero_shot_equals_a_hand_computation(trained_run, evaluated):
    predictions = pd.read_csv(trained_run / "eval" / "predictions.csv")
    handful = predictions[predictions["epoch"] == 20].groupby("eval_domain").nth([0, 7, 13, 20])
    assert len(handful) == 8
    # by hand, with OpenCLIP only: its loader, tokenizer, eval transform and templates
    model = open_clip.create_model(f"local-dir:{trained_run}")
    open_clip.load_checkpoint(model, str(trained_run / "checkpoints" / "epoch_20.pt"))
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{trained_run}")
    preprocess = open_clip.image_transform(32, is_train=False)
    templates = [*OPENAI_IMAGENET_TEMPLATES] + [
        lambda c, w=w, a=a, the=the: f"{a} {w} of {the} {c}." for w, a in
        (("clipart", "a"), ("infograph", "an"), ("quickdraw", "a")) for the in ("the", "a")
    ]
    assert len(templates) == 86
    with torch.no_grad():
        class_vectors = []
        for name in sorted(SHAPE_CLASSES):
            e = model.encode_text(tokenizer([t(name.replace("_", " ")) for t in templates]))
            e = e / e.norm(dim=-1, keepdim=True)
            class_vectors.append(e.mean(dim=0) / e.mean(dim=0).norm())
        weights = torch.stack(class_vectors)
        hand = []
        for path in handful["path"]:
            f = model.encode_image(preprocess(Image.open(path)).unsqueeze(0))
            hand.append(int((f / f.norm(dim=-1, keepdim=True) @ weights.T).argmax()))
    assert hand == handful["pred"].tolist()
    assert np.mean(np.array(hand) == handful["label"].to_numpy()) == pytest.approx(
        (handful["pred"] == handful["label"]).mean())
    # and the table's accuracies are those of the per-image predictions
    table = evaluated[(evaluated["metric"] == "top1") & (evaluated["class_subset"] == "all")]
    for row in table.itertuples():
        mine = predictions[(predictions["epoch"] == row.epoch)
                           & (predictions["eval_domain"] == row.eval_domain)]
        assert row.value == pytest.approx((mine["pred"] == mine["label"]).mean())


def test_table_is_tidy_and_consistent(trained_run, evaluated):
    assert list(evaluated.columns) == list(EVAL_COLUMNS)
    assert set(evaluated["epoch"]) == {0, 10, 20}
    assert set(evaluated["eval_domain"]) == {"real", "sketch"}
    assert set(evaluated["test_domain"]) == {"sketch"} and set(evaluated["setup"]) == {"toy"}
    assert set(evaluated["run"]) == {trained_run.name} and set(evaluated["seed"]) == {0}
    assert set(evaluated["metric"]) == {"top1", "top1_balanced", "class_top1"}
    one = evaluated[(evaluated["epoch"] == 20) & (evaluated["eval_domain"] == "sketch")]
    per_class = one[one["metric"] == "class_top1"].set_index("class_name")
    assert sorted(per_class.index) == sorted(SHAPE_CLASSES)
    assert set(per_class.loc[list(SHAPE_HELDOUT), "class_subset"]) == {"held-out"}
    for subset, n in (("held-out", 12), ("seen", 24), ("all", 36)):
        rows = one[(one["class_subset"] == subset) & (one["class_name"].isna()
                                                       | (one["class_name"] == ""))]
        values = rows.set_index("metric")["value"]
        members = per_class if subset == "all" else per_class[per_class["class_subset"] == subset]
        assert values["top1_balanced"] == pytest.approx(members["value"].mean())
        assert set(rows["n_images"]) == {n}
    written = pd.read_csv(trained_run / "eval" / "zero_shot.csv")
    assert len(written) == len(evaluated)
    assert (trained_run / "eval" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_text_embeddings_are_cached_per_checkpoint(trained_run, evaluated):
    cached = sorted(p.name for p in (trained_run / "eval" / "text_cache").iterdir())
    assert [name.split("_")[2] for name in cached] == ["0", "10", "20"]


def test_supervised_baseline_is_scored_the_same_way(tmp_path, shapes_mixture, tiny_rn_json):
    run = train_supervised(TrainConfig(
        mixture=shapes_mixture, out=tmp_path / "sup", model=str(tiny_rn_json), epochs=6,
        batch_size=32, lr=0.05, progress=False,
    ))
    table = evaluate_run(run, epochs=[0, 6], progress=False)
    assert list(table.columns) == list(EVAL_COLUMNS)
    top1 = table[(table["metric"] == "top1") & (table["class_subset"] == "all")]
    assert top1[top1["epoch"] == 6]["value"].min() > 2 / len(SHAPE_CLASSES)
    assert not (run / "eval" / "text_cache").exists()


def test_eval_on_generated_data_covers_every_domain(tmp_path, tiny_data_root, tiny_vit_json):
    tsv = write_mixture(tiny_data_root, tmp_path / "mix" / "smoke.tsv", domains=("real",),
                        test_domain="sketch", limit=4)
    run = train_clip(TrainConfig(mixture=tsv, out=tmp_path / "run", model=str(tiny_vit_json),
                                 epochs=1, batch_size=8, progress=False))
    table = evaluate_run(run, progress=False)
    domains = {p.name.split("_")[0] for p in tiny_data_root.glob("*_test.txt")}
    assert set(table["eval_domain"]) == domains
    assert set(table["epoch"]) == {0, 1}


# ----------------------------------------------------------------------------------------------
# command line and bad input


def test_eval_cli(trained_run, capsys):
    assert main(["eval", str(trained_run), "--epochs", "-1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "zero_shot.csv (epoch 20, sketch held-out top-1" in out
    table = pd.read_csv(trained_run / "eval" / "zero_shot.csv")
    # epoch 20 re-scored; the epochs scored before (the `evaluated` fixture) are kept, merged
    assert 20 in set(table["epoch"])
    assert not table.duplicated(["epoch", "eval_domain", "class_subset", "class_name",
                                 "metric"]).any()


def test_eval_bad_input_is_a_clear_error(trained_run, tmp_path, capsys):
    assert main(["eval", str(trained_run), "--epochs", "99", "--quiet"]) == 2
    assert "epoch(s) [99] out of range" in capsys.readouterr().err
    assert main(["eval", str(trained_run), "--data", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "norun"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_needs_a_data_root(tmp_path, shapes_mixture, tiny_vit_json):
    manifest = json.loads(shapes_mixture.with_suffix(".json").read_text())
    del manifest["spec"]["data_root"]
    tsv = tmp_path / "noroot.tsv"
    tsv.write_text(shapes_mixture.read_text())
    tsv.with_suffix(".json").write_text(json.dumps(manifest))
    run = train_clip(TrainConfig(mixture=tsv, out=tmp_path / "run", model=str(tiny_vit_json),
                                 epochs=1, batch_size=32, progress=False, stop_after_epoch=0))
    with pytest.raises(ValueError, match="no data root .* pass one"):
        evaluate_run(run, progress=False)
    root = json.loads(shapes_mixture.with_suffix(".json").read_text())["spec"]["data_root"]
    table = evaluate_run(run, data_root=root, progress=False, figure=False)
    assert set(table["epoch"]) == {0}


def test_checkpoint_listing_ignores_partial_files(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch_3.pt").write_bytes(b"x")
    (tmp_path / "checkpoints" / ".epoch_4.pt.tmp-123").write_bytes(b"x")
    assert list(ckpt.list_checkpoints(tmp_path)) == [3]


# ----------------------------------------------------------------------------------------------
# run metadata: one reader


def test_run_info_reads_seeds_and_held_out_classes_once(tmp_path, shapes_root, trained_run):
    """read_run_info: training seed from run.json, mixture seed from the manifest, held-out
    classes from the manifest (display names resolved), the root's list only as a fallback."""
    import json
    import shutil

    from shapes import SHAPE_HELDOUT

    from training.domains import display_name
    from training.runinfo import read_run_info

    info = read_run_info(trained_run)
    assert info.kind == "clip" and info.setup == "toy" and info.test_domain == "sketch"
    assert info.seed == ckpt.read_run_json(trained_run)["settings"]["seed"]
    assert info.mixture_seed == 0
    assert info.heldout == tuple(sorted(SHAPE_HELDOUT)) and info.classes == tuple(SHAPE_CLASSES)
    assert set(info.seen) | set(info.heldout) == set(SHAPE_CLASSES)
    assert list(info.checkpoints) == list(range(21)) and info.image_size == 32
    assert info.meta(4) == {"run": trained_run.name, "setup": "toy", "test_domain": "sketch",
                            "seed": info.seed, "mixture_seed": 0, "epoch": 4}
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("checkpoints", "eval"))
    manifest = json.loads((run / "mixture.json").read_text())
    others = [c for c in SHAPE_CLASSES if c not in SHAPE_HELDOUT][:2]
    manifest["spec"]["heldout"] = [display_name(c) for c in others]
    (run / "mixture.json").write_text(json.dumps(manifest))
    assert read_run_info(run).heldout == tuple(sorted(others))
    manifest["spec"]["heldout"] = []
    (run / "mixture.json").write_text(json.dumps(manifest))
    assert read_run_info(run).heldout == tuple(sorted(SHAPE_HELDOUT))  # the root's file
    manifest["spec"]["heldout"] = ["unicorn"]
    (run / "mixture.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="unicorn"):
        read_run_info(run)
    del manifest["spec"]["data_root"]
    manifest["spec"]["heldout"] = list(SHAPE_HELDOUT)
    (run / "mixture.json").write_text(json.dumps(manifest))
    bare = read_run_info(run)
    assert bare.classes == () and bare.data_root is None
    with pytest.raises(ValueError, match="no data root .* pass one"):
        bare.require_data()
    assert read_run_info(run, shapes_root).heldout == tuple(sorted(SHAPE_HELDOUT))
