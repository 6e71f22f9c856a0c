"""Attribute-object compositional generalization: NMI, AO specs and mixtures, attribute
rendering, evaluation (training.attributes, training.synth.styles.Look)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from conftest import torch_threads

from domainlens.cli import main
from training.attributes import (
    AO_EVAL_COLUMNS,
    AOSpec,
    build_ao_dataset,
    caption_nmi,
    class_text,
    evaluate_ao,
    nmi_from_table,
    pair_subset_masks,
    parse_captions,
    plan_images,
    read_ao_images,
)
from training.mixtures import read_mixture
from training.synth import (
    ATTRIBUTE_CLASSES,
    NAMED_COLOURS,
    OBJECT_CLASSES,
    PATTERNS,
    Look,
    image_rng,
    render_real_look,
)
from training.synth.styles import render_real

OBJECTS = ("apple", "cup", "fish", "umbrella")
COLOURS = ("red", "green", "blue", "yellow")


def captions_of(table: dict[tuple[str, str], int]) -> list[str]:
    """Captions naming (colour, object) as often as ``table`` says, in varied wording."""
    from training.synth.base_captions import plural

    forms = ("a photo of a {} {}.", "two {} {} on the grass", "A {} {} depicted in a snapshot")
    out = []
    for (colour, obj), count in table.items():
        nouns = (obj, plural(obj), obj)
        out += [forms[i % 3].format(colour, nouns[i % 3]) for i in range(count)]
    return out


# --------------------------------------------------------------------------------------- NMI


def test_nmi_of_an_independent_table_is_zero():
    # rows proportional to each other: p(a, o) = p(a) p(o), I = 0 exactly
    table = {("red", "cup"): 2, ("red", "fish"): 4, ("blue", "cup"): 3, ("blue", "fish"): 6}
    result = caption_nmi(captions_of(table), ["red", "blue"], ["cup", "fish"])
    assert result.n_parsed == 15 and result.n_skipped == 0
    assert result.table.loc["blue", "fish"] == 6
    assert result.nmi == pytest.approx(0.0, abs=1e-12)
    assert result.mutual_information == pytest.approx(0.0, abs=1e-12)


def test_nmi_of_a_fully_dependent_table_is_one():
    # each object with one colour (and each colour on one object), unequal class sizes
    table = {("red", "fish"): 3, ("blue", "cup"): 5, ("green", "apple"): 2}
    result = caption_nmi(captions_of(table), ["red", "green", "blue"], ["apple", "cup", "fish"])
    assert result.nmi == pytest.approx(1.0, abs=1e-12)
    # H(A) = H(O) = -(0.3 ln 0.3 + 0.5 ln 0.5 + 0.2 ln 0.2)
    h = -(0.3 * math.log(0.3) + 0.5 * math.log(0.5) + 0.2 * math.log(0.2))
    assert result.h_attribute == pytest.approx(h) and result.h_object == pytest.approx(h)


def test_nmi_of_an_in_between_table_equals_the_hand_computation():
    # counts (8 captions):      cup  fish  apple
    #                    red      3     1      0
    #                    blue     1     1      2
    table = {("red", "cup"): 3, ("red", "fish"): 1, ("blue", "cup"): 1, ("blue", "fish"): 1,
             ("blue", "apple"): 2}
    # p(a) = (1/2, 1/2); p(o) = (cup 1/2, fish 1/4, apple 1/4)
    # I = 3/8 ln((3/8)/(1/4)) + 1/8 ln((1/8)/(1/8)) + 1/8 ln((1/8)/(1/4))
    #   + 1/8 ln((1/8)/(1/8)) + 2/8 ln((2/8)/(1/8))
    mi = 3 / 8 * math.log(1.5) + 0 + 1 / 8 * math.log(0.5) + 0 + 1 / 4 * math.log(2)
    h_a = math.log(2)
    h_o = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))  # = 1.5 ln 2
    expected = mi / ((h_a + h_o) / 2)
    assert 0.2 < expected < 0.5  # really in between
    result = caption_nmi(captions_of(table), ["red", "blue"], ["cup", "fish", "apple"])
    assert result.mutual_information == pytest.approx(mi, rel=1e-12)
    assert result.nmi == pytest.approx(expected, rel=1e-12)
    geometric = caption_nmi(captions_of(table), ["red", "blue"], ["cup", "fish", "apple"],
                            average="geometric")
    assert geometric.nmi == pytest.approx(mi / math.sqrt(h_a * h_o), rel=1e-12)


def test_nmi_agrees_with_scikit_learn_on_random_tables():
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(0, 6, size=(int(rng.integers(2, 5)), int(rng.integers(2, 5))))
        a, o = np.nonzero(counts >= 0)
        labels_a = np.repeat(a, counts.ravel())
        labels_o = np.repeat(o, counts.ravel())
        for average in ("arithmetic", "geometric", "min", "max"):
            ours = nmi_from_table(counts, average)[0]
            theirs = normalized_mutual_info_score(labels_a, labels_o, average_method=average)
            assert ours == pytest.approx(theirs, abs=1e-10), (counts, average)


def test_captions_are_parsed_for_one_attribute_and_one_object():
    parsed = parse_captions(
        ["a photo of a red traffic light", "three blue cups on a table", "a red cup and a fish",
         "a red and blue cup", "a cupboard in red", "a striped green hot air balloon",
         "a cup"],
        ["red", "blue", "green"], ["traffic_light", "cup", "hot_air_balloon"])
    assert parsed.to_dict("list") == {
        "attribute": ["red", "blue", "red", "", "red", "green", ""],
        "object": ["traffic_light", "cup", "cup", "cup", "", "hot_air_balloon", "cup"],
    }


# --------------------------------------------------------------------------- specs and mixtures


@pytest.fixture(scope="module")
def tiny_ao(tmp_path_factory):
    """A tiny AO root: 4 objects x 4 colours x 3 patterns, 64 training images, knob 0.5."""
    spec = AOSpec(objects=OBJECTS, colours=COLOURS, entanglement=0.5, n_train=64, n_test=1,
                  heldout_pairs=(("blue", "apple"), ("red", "cup"), ("dotted", "fish")))
    return build_ao_dataset(spec, tmp_path_factory.mktemp("ao"), progress=False)


def test_heldout_pairs_never_appear_in_training_images_or_captions(tiny_ao):
    held = set(tiny_ao.spec.heldout_pairs)
    images = read_ao_images(tiny_ao.root)
    train, test = images[images["split"] == "train"], images[images["split"] == "test"]
    for kind in ("colour", "pattern"):
        train_pairs = set(zip(train[kind], train["class_name"], strict=True))
        test_pairs = set(zip(test[kind], test["class_name"], strict=True))
        assert not train_pairs & held
        assert {p for p in held if p[0] in tiny_ao.spec.kinds()[kind]} <= test_pairs
    # the captions the model trains on, parsed back from the written TSV
    rows = read_mixture(tiny_ao.tsv).rows
    assert len(rows) == 64 and set(rows["filepath"]) == {str(tiny_ao.root / e)
                                                         for e in train["entry"]}
    for vocabulary in (COLOURS, PATTERNS):
        parsed = parse_captions(rows["title"], vocabulary, OBJECTS)
        assert (parsed["attribute"] != "").all() and (parsed["object"] != "").all()
        assert not set(zip(parsed["attribute"], parsed["object"], strict=True)) & held
    # the caption names what was rendered
    by_path = train.set_index(train["entry"].map(lambda e: str(tiny_ao.root / e)))
    colours = parse_captions(rows["title"], COLOURS, OBJECTS)["attribute"].to_numpy()
    assert (colours == by_path.loc[rows["filepath"], "colour"].to_numpy()).all()
    # the manifest records the spec, the held-out pairs and the NMI of the captions
    manifest = read_mixture(tiny_ao.tsv).manifest
    assert {tuple(p) for p in manifest["heldout_pairs"]} == held
    assert manifest["nmi"]["colour"] == pytest.approx(
        caption_nmi(rows["title"], COLOURS, OBJECTS).nmi)
    assert manifest["spec"]["setup"] == "ao" and manifest["spec"]["entanglement"] == 0.5


def test_the_knob_moves_nmi_monotonically_at_fixed_size():
    nmis, patterns = [], []
    for knob in np.linspace(0, 1, 6):
        spec = AOSpec(objects=OBJECTS, colours=COLOURS, entanglement=float(knob), n_train=240)
        train = plan_images(spec).query("split == 'train'")
        assert len(train) == 240 and train["class_name"].value_counts().eq(60).all()
        titles = [class_text(o, c, p) for o, c, p in
                  zip(train["class_name"], train["colour"], train["pattern"], strict=True)]
        nmis.append(caption_nmi(titles, COLOURS, OBJECTS).nmi)
        patterns.append(caption_nmi(titles, PATTERNS, OBJECTS).nmi)
    assert all(b > a + 0.02 for a, b in zip(nmis, nmis[1:], strict=False)), nmis
    assert nmis[-1] == pytest.approx(1.0)  # 4 objects each bound to its own colour
    assert max(patterns) < 0.01  # the knob entangles colour only


def test_decorrelated_spec_without_heldout_pairs_has_zero_nmi():
    spec = AOSpec(objects=OBJECTS, colours=COLOURS, heldout_pairs=(), n_train=96)
    train = plan_images(spec).query("split == 'train'")
    assert caption_nmi([class_text(o, c, "plain") for o, c in
                        zip(train["class_name"], train["colour"], strict=True)],
                       COLOURS, OBJECTS).nmi == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("change", "message"), [
    ({"heldout_pairs": (("pink", "cup"),)}, "unknown attribute value 'pink'"),
    ({"heldout_pairs": (("red", "cupboard"),)}, "object 'cupboard'"),
    ({"heldout_pairs": tuple((c, "fish") for c in COLOURS)}, "every colour of 'fish'"),
    ({"patterns": ("plain",), "heldout_pairs": (("plain", "cup"),)}, "every pattern of 'cup'"),
    ({"entanglement": 1.5}, "entanglement must be a finite number >= 0 and <= 1, got 1.5"),
    ({"entanglement": -0.1}, "got -0.1"),
    ({"colours": ("red", "magenta")}, "colours: unknown ['magenta']"),
    ({"patterns": ("plaid",)}, "patterns: unknown ['plaid']"),
    ({"objects": ("banana", "cup")}, "objects: unknown ['banana']"),
    ({"n_train": 101}, "n_train must be a multiple of the 4 objects, got 101"),
    ({"entangle": ("size",)}, "entangle: unknown ['size']"),
])
def test_bad_specs_are_refused_with_one_line(change, message):
    with pytest.raises((ValueError, TypeError)) as error:
        AOSpec(**{"objects": OBJECTS, "colours": COLOURS, **change})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_spec_on_the_command_line_is_one_line(tmp_path, capsys):
    assert main(["ao-data", "--out", str(tmp_path / "ao"), "--heldout", "pink:cup",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown attribute value 'pink'" in err
    assert "Traceback" not in err and not (tmp_path / "ao").exists()


def test_ao_nmi_command_prints_one_line_and_writes_a_csv(tiny_ao, tmp_path, capsys):
    out = tmp_path / "nmi.csv"
    assert main(["ao-nmi", str(tiny_ao.tsv), "--attributes", *COLOURS, "--objects", *OBJECTS,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and f"{tiny_ao.nmi['colour']:.4f}" in printed
    row = pd.read_csv(out).iloc[0]
    assert row["nmi"] == pytest.approx(tiny_ao.nmi["colour"]) and row["n_parsed"] == 64
    assert main(["ao-nmi", str(tmp_path / "missing.tsv"), "--attributes", "red",
                 "--objects", "cup"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err


# --------------------------------------------------------------------------------- rendering


def _chromaticity(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.float64)
    return rgb / np.clip(rgb.sum(axis=-1, keepdims=True), 1, None)


def _looks(seed: int = 3):
    """(look, image (32, 32, 3) float, main mask (32, 32)) over objects x colours x patterns."""
    for obj in OBJECTS:
        for k, colour in enumerate(COLOURS):
            for pattern in PATTERNS:
                for i in range(2):
                    rng = image_rng(seed, "real", obj, 100 + 10 * k + i)
                    img, main_mask = render_real_look(OBJECT_CLASSES[obj], rng, 32,
                                                      Look(colour, pattern))
                    yield Look(colour, pattern), np.asarray(img, np.float64), main_mask


def test_the_objects_colour_is_the_one_its_caption_names():
    # mean chromaticity (r, g, b) / (r + g + b) of the main part's pixels, nearest named
    # colour of the vocabulary; chromaticity ignores the shading and a dark pattern ink
    named = {c: _chromaticity(NAMED_COLOURS[c]) for c in COLOURS}
    hits, shuffled, n = 0, 0, 0
    rng = np.random.default_rng(0)
    for look, pixels, main_mask in _looks():
        assert main_mask.sum() >= 20
        mean = _chromaticity(pixels[main_mask]).mean(axis=0)
        nearest = min(COLOURS, key=lambda c: np.linalg.norm(mean - named[c]))
        hits += nearest == look.colour
        shuffled += nearest == COLOURS[int(rng.integers(len(COLOURS)))]
        n += 1
    assert hits / n >= 0.85, hits / n  # measured 0.92 (88 of 96)
    assert shuffled / n < 0.45  # a caption unrelated to the image: about chance (0.25)


def _texture(pixels: np.ndarray, main_mask: np.ndarray) -> float:
    """Mean absolute luminance step between neighbouring main-part pixels."""
    lum = pixels @ np.asarray([0.299, 0.587, 0.114])
    steps = [np.abs(np.diff(lum, axis=1))[main_mask[:, 1:] & main_mask[:, :-1]],
             np.abs(np.diff(lum, axis=0))[main_mask[1:] & main_mask[:-1]]]
    return float(np.concatenate(steps).mean())


def test_striped_and_dotted_surfaces_differ_from_plain_ones_in_texture():
    texture: dict[str, list[float]] = {p: [] for p in PATTERNS}
    for look, pixels, main_mask in _looks():
        texture[look.pattern].append(_texture(pixels, main_mask))
    # measured: plain 3.6-8.2, striped 18.6-40.0, dotted 14.4-28.2 (grey levels)
    assert max(texture["plain"]) < min(texture["striped"])
    assert max(texture["plain"]) < min(texture["dotted"])
    assert np.mean(texture["striped"]) > 2.5 * np.mean(texture["plain"])


def test_looks_are_deterministic_and_default_renders_unchanged():
    cls = OBJECT_CLASSES["cup"]
    a, mask_a = render_real_look(cls, image_rng(0, "real", "cup", 5), 32, Look("blue", "striped"))
    b, mask_b = render_real_look(cls, image_rng(0, "real", "cup", 5), 32, Look("blue", "striped"))
    assert a.tobytes() == b.tobytes() and (mask_a == mask_b).all()
    # the generator's own images, rendered without a look: the bytes they had before looks
    digest = hashlib.sha256()
    for name in ("apple", "cup", "bed"):
        digest.update(render_real(OBJECT_CLASSES[name], image_rng(0, "real", name, 0), 32).tobytes())
    assert digest.hexdigest()[:16] == REAL_RENDERS_SHA


#: sha256 (first 16 hex digits) of three 32 px real renders, measured before looks existed.
REAL_RENDERS_SHA = "906d102af24d6bfc"


def test_attribute_classes_are_mostly_their_main_colour():
    from training.synth.styles import _area

    for name in ATTRIBUTE_CLASSES:
        fractions = []
        for seed in range(20):
            area: dict[str, float] = {}
            for p in OBJECT_CLASSES[name].build(np.random.default_rng(seed)):
                if p.kind == "poly" and p.filled:
                    area[p.role] = area.get(p.role, 0.0) + _area(p.pts)
            fractions.append(area.get("main", 0.0) / sum(area.values()))
        assert np.mean(fractions) >= 0.6, name
    with pytest.raises(ValueError, match="colour must be one of"):
        Look("magenta")


# ------------------------------------------------------------------------------- end to end


def test_tiny_end_to_end_build_train_evaluate(tiny_ao, tmp_path, tiny_rn_json, capsys):
    from training.supervised import train_supervised
    from training.train import TrainConfig, train_clip

    settings = dict(mixture=tiny_ao.tsv, model=str(tiny_rn_json), epochs=1, batch_size=32,
                    progress=False, device="cpu")
    with torch_threads(1):
        clip = train_clip(TrainConfig(out=tmp_path / "clip", **settings))
        sup = train_supervised(TrainConfig(out=tmp_path / "sup", **settings))
        clip_table = evaluate_ao(clip, progress=False)
        sup_table = evaluate_ao(sup, progress=False)
    for table in (clip_table, sup_table):
        assert tuple(table.columns) == AO_EVAL_COLUMNS
        assert table["value"].between(0, 1).all()
    assert (clip / "eval" / "ao.csv").is_file()
    got = set(zip(clip_table["attribute"], clip_table["pair_subset"], clip_table["metric"],
                  strict=True))
    for metric in ("object_top1", "attribute_top1", "pair_top1"):
        assert {("colour", "held-out", metric), ("colour", "seen", metric),
                ("pattern", "held-out", metric), ("pattern", "seen", metric)} <= got
    assert set(sup_table["metric"]) == {"object_top1"} and set(sup_table["kind"]) == {"supervised"}
    n = clip_table.set_index(["attribute", "pair_subset", "metric"])["n_images"]
    # 2 held-out colour pairs x 3 patterns x 1 image; 1 held-out pattern pair x 4 colours
    assert n[("colour", "held-out", "pair_top1")] == 6
    assert n[("pattern", "held-out", "pair_top1")] == 4
    # seen: the 48 grid images minus those with any held-out pair (6 + 4, none shared)
    assert n[("colour", "seen", "object_top1")] == 48 - 10
    assert clip_table["nmi"].iloc[0] == pytest.approx(tiny_ao.nmi["colour"])
    assert (clip_table["entanglement"] == 0.5).all()
    # layerwise CKA between the colours on the command line: one line per reference
    assert main(["ao-cka", str(clip), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and "CKA between colours (none): stem " in printed[0]
    assert "(init)" in printed[1] and (clip / "eval" / "ao_cka_colour.csv").is_file()
    assert main(["ao-cka", str(clip), "--attribute", "size", "--quiet"]) == 2
    assert "attribute must be one of ['colour', 'pattern'], got 'size'" in capsys.readouterr().err
    # circuits compared across colours: every object's colour pairs, both references
    from domainlens.ao_experiment import ATTRIBUTE_CIRCUIT_COLUMNS, attribute_circuits

    with torch_threads(1):
        circuits = attribute_circuits(clip, "colour", progress=False, write=False)
    assert tuple(circuits.columns) == ATTRIBUTE_CIRCUIT_COLUMNS
    assert set(circuits["reference"]) == {"none", "init"}
    wl = circuits[(circuits["metric"] == "wl_kernel") & (circuits["reference"] == "none")]
    n_colours = len(tiny_ao.spec.colours)
    assert len(wl) == len(OBJECTS) * n_colours * (n_colours - 1) // 2
    held = set(tiny_ao.spec.heldout_pairs)
    expected = [(a, o) in held or (b, o) in held
                for a, b, o in zip(wl["value_a"], wl["value_b"], wl["class_name"], strict=True)]
    assert wl["heldout_pair"].tolist() == expected and any(expected) and not all(expected)
    assert circuits["value"].dropna().between(0, 1 + 1e-9).all()
    assert main(["ao-circuits", str(clip), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and "WL kernel between colours (none): without a held-out" in printed[0]
    assert (clip / "eval" / "ao_circuits_colour.csv").is_file()
    assert main(["ao-circuits", str(sup), "--quiet"]) == 2
    assert "is a 'supervised' run" in capsys.readouterr().err
    # a diverged checkpoint is refused, not scored
    import torch

    path = clip / "checkpoints" / "epoch_1.pt"
    payload = torch.load(path, weights_only=False)
    first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][first].view(-1)[0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(ValueError, match="holds non-finite weights"):
        evaluate_ao(clip, progress=False)


# ------------------------------------------------------------------------ reproduce: study-ao


def _ao_config(tmp_path, model: str, **ao):
    from domainlens.config import parse_config

    raw = {"name": "ao-tiny", "data": {"source": "ao", "image_size": 32},
           "ao": {"entanglements": [0.0, 1.0], "n_train": 64, "n_test": 1, **ao},
           "train": {"model": model, "epochs": 1, "batch_size": 32, "lr": 3e-3, "seeds": [0],
                     "threads": 1}}
    return parse_config(raw, out=tmp_path / "out")


def test_reproduce_runs_the_ao_experiment_and_reports_it(tmp_path, tiny_rn_json):
    from domainlens import layout, pipeline
    from domainlens.ao_experiment import ATTRIBUTE_CKA_COLUMNS, attribute_cka

    config = _ao_config(tmp_path, str(tiny_rn_json), cka=True)
    status = pipeline.reproduce(config, progress=False, log=lambda message: None)
    assert list(status) == [
        "ao-data/ao-e0.0", "ao-data/ao-e1.0", "train/ao-e0.0-s0", "eval/ao-e0.0-s0",
        "cka/ao-e0.0-s0", "train/ao-e0.0-supervised-s0", "eval/ao-e0.0-supervised-s0",
        "train/ao-e1.0-s0", "eval/ao-e1.0-s0", "cka/ao-e1.0-s0", "train/ao-e1.0-supervised-s0",
        "eval/ao-e1.0-supervised-s0", "report"]
    results = config.out_dir / layout.RESULTS_DIR
    table = pd.read_csv(results / layout.AO_TABLE)
    assert tuple(table.columns) == AO_EVAL_COLUMNS
    assert set(table["kind"]) == {"clip", "supervised"} and set(table["entanglement"]) == {0, 1}
    # the knob reached the captions: NMI 1 at e = 1, lower at e = 0
    nmi = table[table["attribute"] == "colour"].groupby("entanglement")["nmi"].first()
    assert nmi[1.0] == pytest.approx(1.0) and nmi[0.0] < 0.5
    assert (results / f"{layout.AO_FIGURE}.png").is_file()
    shown = pd.read_csv(results / f"{layout.AO_FIGURE}.csv")
    assert {"nmi", "mean", "std", "n_seeds", "pair_subset"} <= set(shown.columns)
    report = (config.out_dir / layout.REPORT_MD).read_text()
    assert "Held-out and seen (colour, object) pairs" in report
    # CKA between colours: every pair of the 4 colours at every site, measured and at epoch 0
    cka = pd.read_csv(results / layout.AO_CKA)
    assert tuple(cka.columns) == ATTRIBUTE_CKA_COLUMNS
    assert set(cka["reference"]) == {"none", "init"} and set(cka["kind"]) == {"clip"}
    per_site = cka.groupby(["run", "reference", "site"]).size()
    assert (per_site == 6).all() and cka["value"].notna().all()
    assert (results / f"{layout.AO_CKA_FIGURE}.png").is_file() and "CKA between colours" in report
    run = layout.ao_run_dir(config, 1.0, 0)
    init = attribute_cka(run, epoch=0, references=(), progress=False, write=False)
    reference = cka[(cka["run"] == run.name) & (cka["reference"] == "init")]
    assert np.allclose(init["value"].to_numpy(), reference["value"].to_numpy())
    # a rerun skips every step
    again = pipeline.reproduce(config, progress=False, log=lambda message: None)
    assert set(again.values()) == {"skipped"}


@pytest.mark.parametrize(("raw", "message"), [
    ({"ao": {"entanglements": [0.0, 1.5]}}, "[ao] entanglements must be a finite number >= 0"),
    ({"ao": {"heldout_pairs": [["pink", "cup"]]}}, "[ao] held-out pair ('pink', 'cup')"),
    ({"mixtures": {"setups": ["cg-high"]}}, "['[mixtures]'] are not read by it"),
    ({"data": {"source": "synth"}}, "[ao] is for [data] source = 'ao'"),
])
def test_bad_ao_configs_are_one_line(raw, message):
    from domainlens.config import parse_config

    base = {"name": "x", "data": {"source": "ao", "image_size": 32},
            "ao": {"entanglements": [0.0]}}
    merged = {**base, **{k: {**base.get(k, {}), **v} for k, v in raw.items()}}
    with pytest.raises(ValueError) as error:
        parse_config(merged)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_study_ao_config_loads():
    from domainlens.ao_experiment import ao_runs
    from domainlens.config import load_config

    config = load_config("study-ao")
    assert config.data.source == "ao" and len(ao_runs(config)) == 30


def test_nmi_of_any_caption_tsv_by_its_caption_column(tmp_path, capsys):
    table = {("red", "cup"): 3, ("blue", "fish"): 2}
    tsv = tmp_path / "cc3m.tsv"
    tsv.write_text("url\tcaption\n" + "".join(f"http://x/{i}.jpg\t{c}\n"
                                               for i, c in enumerate(captions_of(table))))
    assert main(["ao-nmi", str(tsv), "--caption-column", "caption", "--attributes", "red",
                 "blue", "--objects", "cup", "fish"]) == 0
    assert "= 1.0000" in capsys.readouterr().out
    assert main(["ao-nmi", str(tsv), "--attributes", "red", "--objects", "cup"]) == 2
    err = capsys.readouterr().err
    assert "has no column 'title'" in err and "['url', 'caption']" in err and err.count("\n") == 1


def test_the_same_spec_renders_the_same_images_and_captions(tmp_path):
    spec = AOSpec(objects=OBJECTS, colours=COLOURS, entanglement=0.25, n_train=16, n_test=1,
                  patterns=("plain", "striped"))
    first = build_ao_dataset(spec, tmp_path / "a", progress=False)
    second = build_ao_dataset(spec, tmp_path / "b", progress=False)
    assert first.images.equals(second.images)
    for entry in first.images["entry"]:
        assert (first.root / entry).read_bytes() == (second.root / entry).read_bytes()
    other = build_ao_dataset(AOSpec(**{**spec.to_dict(), "heldout_pairs": spec.heldout_pairs,
                                       "seed": 1}), tmp_path / "c", progress=False)
    assert (other.root / other.images["entry"][0]).read_bytes() != (
        first.root / first.images["entry"][0]).read_bytes()


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` grown by ``steps`` pixels (4-neighbourhood)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def test_across_knob_values_only_the_main_parts_colour_changes():
    low = plan_images(AOSpec(entanglement=0.0)).query("split == 'train'")
    high = plan_images(AOSpec(entanglement=1.0)).query("split == 'train'")
    assert (low["entry"].to_numpy() == high["entry"].to_numpy()).all()
    assert (low["pattern"].to_numpy() == high["pattern"].to_numpy()).all()
    differ = low.index[low["colour"].to_numpy() != high["colour"].to_numpy()][:6]
    assert len(differ) == 6
    for i in differ:
        renders = []
        for row in (low.loc[i], high.loc[i]):
            rng = image_rng(0, "real", row["class_name"], int(row["index"]))
            img, main_mask = render_real_look(OBJECT_CLASSES[row["class_name"]], rng, 32,
                                              Look(row["colour"], row["pattern"]))
            renders.append((np.asarray(img, np.int64), main_mask))
        (a, mask_a), (b, mask_b) = renders
        assert (mask_a == mask_b).all()
        changed = np.abs(a - b).sum(axis=-1) > 0
        assert changed[mask_a].mean() > 0.9  # the main part took the other colour
        near_main = _dilate(mask_a, 2)
        assert changed[~near_main].mean() < 0.02  # scene and pose are the same image's


def test_pair_subsets_by_hand():
    """At knob 1 an object keeps one colour: its other non-held-out colours are unseen, not
    seen. Two objects, three colours, held out (green, cup); training: apple only red, cup only
    blue (one pattern)."""
    spec = AOSpec(objects=("apple", "cup"), colours=("red", "green", "blue"),
                  patterns=("plain",), heldout_pairs=(("green", "cup"),), entanglement=1.0,
                  n_train=8)
    counts = {"colour": {"red": {"apple": 4, "cup": 0}, "green": {"apple": 0, "cup": 0},
                         "blue": {"apple": 0, "cup": 4}},
              "pattern": {"plain": {"apple": 4, "cup": 4}}}
    grid = pd.DataFrame([(o, c, "plain") for o in spec.objects for c in spec.colours],
                        columns=["class_name", "colour", "pattern"])
    masks = pair_subset_masks(spec, grid, counts)["colour"]
    # rows: apple-red, apple-green, apple-blue, cup-red, cup-green, cup-blue
    assert masks["held-out"].tolist() == [False, False, False, False, True, False]
    assert masks["seen"].tolist() == [True, False, False, False, False, True]
    assert masks["unseen"].tolist() == [False, True, True, True, False, False]
