"""``domainlens reproduce``: configs, plan, end-to-end smoke run, interrupt and resume, report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import interrupt_after_epoch_1
from fakedata import make_fake_domainnet
from PIL import Image

from domainlens import pipeline
from domainlens.cli import main
from domainlens.config import load_config, parse_config, shipped_configs
from domainlens.layout import analysed_runs
from domainlens.report import findings, headline, run_accuracy

SMOKE_STEPS = [
    "data", "mixtures",
    "train/quickdraw/natural-only/s0", "eval/quickdraw/natural-only/s0",
    "train/quickdraw/cg-high/s0", "eval/quickdraw/cg-high/s0",
    "train/sketch/natural-only/s0", "eval/sketch/natural-only/s0",
    "train/sketch/cg-high/s0", "eval/sketch/cg-high/s0",
    "cka/quickdraw/cg-high/s0", "patching/quickdraw/cg-high/s0", "circuits/quickdraw/cg-high/s0",
    "circuits-mean-baseline/quickdraw/cg-high/s0", "report",
]
GALLERY = ["accuracy_by_setup", "cka_by_layer", "patching_by_layer", "node_sharing_by_layer",
           "circuit_similarity", "circuit_drawing", "contact_sheet"]


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- configs


def test_shipped_configs_load_and_validate():
    assert {"smoke", "quickstart", "study", "paper"} <= set(shipped_configs())
    for name in shipped_configs():
        config = load_config(name, out="/tmp/x")
        assert config.name == name and config.out == "/tmp/x"
    study = load_config("study")
    assert set(study.mixtures.test_domains) == {"clipart", "sketch", "quickdraw"}
    assert set(study.mixtures.setups) == {"natural-only", "cg-low", "cg-high", "leave-out-domain",
                                          "upper-high"}
    assert len(study.train.seeds) == 3
    quick = load_config("quickstart")
    assert set(quick.mixtures.test_domains) == {"sketch", "quickdraw"}
    assert quick.analyses.cka and quick.analyses.patching and quick.analyses.circuits


@pytest.mark.parametrize("text, message", [
    ("[train]\nepochz = 3\n", "unknown key(s) ['epochz'] in [train]"),
    ("colour = 1\n", "unknown key(s) ['colour'] at the top"),
    ("[mixtures]\nsetups = ['cg-medium']\n", "'cg-medium'"),
    ("[mixtures]\ntest_domains = ['cartoon']\n", "'cartoon'"),
    ("[mixtures]\ntest_domains = ['real']\n", "'real'"),
    ("[analyses]\nsetups = ['upper-high']\n", "must be among [mixtures] setups"),
    ("[analyses]\nclasses = 'unseen'\n", "'unseen'"),
    ("[train]\nepochs = 'ten'\n", "epochs must be an integer"),
    ("[train]\nseeds = 0\n", "seeds must be a list"),
    ("[data]\nsource = 'imagenet'\n", "'imagenet'"),
    ("[data]\nsource = 'domainnet'\n", "needs base_tsv"),
    ("[mixtures]\nsize_rule = 'fixed'\n", "size > 0 is required"),
    ("[train\n", "not valid TOML"),
    # values that used to pass the check and fail later, some only after all training
    ("[mixtures]\ntest_domains = ['sketch']\n[analyses]\npatch_source = 'sketch'\n",
     "patch_source 'sketch' is an analysed test domain"),
    ("[data]\nn_test = 4\n[analyses]\ncircuit_images = 5\n",
     "circuit_images = 5 is more than the 4 test images"),
    ("[train]\ndevice = 'tpu'\n", "[train] device must be one of ['auto', 'cpu', 'cuda'"),
    ("[train]\nwarmup_steps = -1\n", "[train] warmup_steps must be an integer >= 0, got -1"),
    ("[train]\nbatch_size = 1\n", "[train] batch_size must be an integer >= 2, got 1"),
    ("[data]\nclasses = ['axe', 'unicorn']\n", "[data] classes: unknown ['unicorn']"),
    ("[data]\nclasses = ['bicycle', 'house']\n", "include no held-out class"),
    ("[train]\nweight_decay = -0.1\n", "[train] weight_decay must be a finite number >= 0"),
    ("[train]\nlr = inf\n", "[train] lr must be a finite number > 0, got inf"),
    ("[train]\nlr = nan\n", "[train] lr must be a finite number > 0, got nan"),
    ("[analyses.circuit_variants]\nIG = {method = 'ig'}\n", "name 'IG' must be lower-case"),
    ("[analyses.circuit_variants]\nig = {methd = 'ig'}\n", "ig keys: unknown ['methd']"),
    ("[analyses.circuit_variants]\nig = {method = 'lrp'}\n", "ig.method: unknown ['lrp']"),
    ("[analyses.circuit_variants]\nig = {}\n", "ig must be a non-empty table"),
])
def test_bad_config_is_an_error_naming_the_value(tmp_path, text, message):
    path = write_toml(tmp_path / "bad.toml", text)
    with pytest.raises(ValueError) as error:
        load_config(path, out=tmp_path / "out")
    assert message in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_config_through_the_cli_fails_before_any_work(tmp_path, capsys):
    path = write_toml(tmp_path / "bad.toml", "[mixtures]\nsetups = ['cg-medium']\n")
    assert main(["reproduce", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "cg-medium" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["reproduce", "no-such-config"]) == 2
    assert "shipped configs" in capsys.readouterr().err


def test_data_root_that_is_not_domainnet_shaped_fails_at_plan_time(tmp_path):
    not_domainnet = tmp_path / "photos"
    (not_domainnet / "cats").mkdir(parents=True)
    base = tmp_path / "base.tsv"
    base.write_text("filepath\ttitle\n")
    config = parse_config({"data": {"source": "domainnet", "root": str(not_domainnet),
                                    "base_tsv": str(base)}}, out=tmp_path / "out")
    with pytest.raises(ValueError, match="not DomainNet-shaped"):
        pipeline.plan(config)
    missing = config.replace("data", root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="is not a directory"):
        pipeline.plan(missing)
    root = make_fake_domainnet(tmp_path / "dn", with_images=False)
    no_base = config.replace("data", root=str(root), base_tsv=str(tmp_path / "none.tsv"))
    with pytest.raises(ValueError, match="base_tsv"):
        pipeline.plan(no_base)
    assert not (tmp_path / "out").exists()


def test_paper_config_resolves_its_plan(tmp_path, monkeypatch, capsys):
    """The paper config on a DomainNet-shaped root: every setup x test domain x seed is
    trained and scored, the analysed runs get all three analyses, nothing runs."""
    monkeypatch.setattr(pipeline, "measure_throughput", lambda *a, **k: (100.0, 400.0))
    root = make_fake_domainnet(tmp_path / "domainnet", with_images=False)
    assert main(["reproduce", "paper", "--dry-run", "--out", str(tmp_path / "out"),
                 "--data-root", str(root), "--base-tsv", str(root / "base.tsv")]) == 0
    printed = capsys.readouterr().out
    config = load_config("paper", out=tmp_path / "out").replace(
        "data", root=str(root), base_tsv=str(root / "base.tsv"))
    steps = pipeline.plan(config)
    ids = [s.id for s in steps]
    seeds = 3
    main_runs = 5 * 6 * seeds                   # test domains x setups x seeds
    supervised = main_runs                      # one supervised baseline per main run
    domain_interp = 2 * 9 * seeds               # sketch, clipart: 9 subsets (ends are main runs)
    allow = 5 * 2 * 6 * seeds                   # every domain, cg-low/high, 6 fractions p
    aligned = seeds                             # quickdraw's CG high-diversity twin
    n_runs = main_runs + supervised + domain_interp + allow + aligned
    trains = [i for i in ids if i.startswith("train/")]
    assert len(trains) == n_runs == 417
    assert sum(i.startswith("eval/") for i in ids) == n_runs
    assert sum("-supervised/" in i for i in trains) == supervised
    assert sum("/domain-interp-" in i for i in trains) == domain_interp
    assert sum("-allow" in i for i in trains) == allow
    assert [i for i in trains if "aligned" in i] == [
        f"train/quickdraw/cg-high-aligned/s{s}" for s in range(seeds)]
    for kind in ("cka", "patching", "circuits", "embeddings", "features"):
        assert sum(i.startswith(f"{kind}/") for i in ids) == 5 * 4
    assert [i for i in ids if i.startswith("aligned/")] == ["aligned/quickdraw/cg-high/s0"]
    mixtures = {p.stem for p in next(s for s in steps if s.id == "mixtures").outputs}
    # the paper's file names: sketch's {c, q} subset, clipart's upper bound at p = 0.05, the twin
    assert {"lso-cqrs-nosketchclasses", "lso-cipqrs-noclipartclasses-allow0.05",
            "lso-cipqrs-noquickdrawclasses-aligned"} <= mixtures
    assert ids[0] == "data" and ids[-1] == "report" and len(set(ids)) == len(ids)
    assert f"{len(steps)} steps" in printed and "estimated time left" in printed
    train = next(s for s in steps if s.id == "train/quickdraw/cg-high/s2")
    assert train.params["model"] == "RN50" and train.params["batch_size"] == 1024
    assert train.params["warmup_steps"] == 500 and train.params["epochs"] == 32
    assert train.outputs[0].name == "epoch_32.pt"
    assert "lso-cipqrs-noquickdrawclasses-s2" in str(train.outputs[0])
    assert not (tmp_path / "out").exists()


def test_plan_keys_change_only_downstream_of_a_changed_setting(tmp_path):
    config = load_config("smoke", out=tmp_path)
    before = {s.id: s.key for s in pipeline.plan(config)}
    after = {s.id: s.key for s in pipeline.plan(config.replace("analyses", circuit_images=3))}
    changed = {i for i in before if before[i] != after[i]}
    # the circuit variant computes the same circuits with other settings: it follows
    assert changed == {"circuits/quickdraw/cg-high/s0",
                       "circuits-mean-baseline/quickdraw/cg-high/s0", "report"}
    after = {s.id: s.key for s in pipeline.plan(config.replace("train", epochs=3))}
    assert {i for i in before if before[i] == after[i]} == {"data", "mixtures"}


def test_plan_keys_follow_analysis_defaults_and_code(tmp_path, monkeypatch):
    """An analysis step reruns when a default of its settings dataclass or its code changes,
    not only when one of the config's fields does."""
    import dataclasses

    from domainlens import steps as steps_module
    from domainlens.experiments import cka

    config = load_config("smoke", out=tmp_path)
    before = {s.id: s.key for s in pipeline.plan(config)}
    changed_default = dataclasses.make_dataclass(
        "CKASettings", [("pooling", str, dataclasses.field(default="cls"))],
        bases=(cka.CKASettings,), frozen=True)
    monkeypatch.setattr(cka, "CKASettings", changed_default)
    after = {s.id: s.key for s in pipeline.plan(config)}
    assert {i for i in before if before[i] != after[i]} == {"cka/quickdraw/cg-high/s0", "report"}
    monkeypatch.undo()
    real = steps_module.code_digest
    monkeypatch.setattr(steps_module, "code_digest", lambda modules: real(modules) + (
        "-edited" if "interp.circuits" in modules else ""))
    after = {s.id: s.key for s in pipeline.plan(config)}
    assert {i for i in before if before[i] != after[i]} == {
        "circuits/quickdraw/cg-high/s0", "circuits-mean-baseline/quickdraw/cg-high/s0", "report"}


def test_claim_run_dir_never_deletes_a_stale_run(tmp_path):
    """Each settings change moves the previous run aside to a fresh name (.stale, .stale-2,
    ...); no earlier run is deleted."""
    run = tmp_path / "runs" / "lso-real-only-s0"
    for i, key in enumerate(("k1", "k2", "k3", "k3")):
        pipeline._claim_run_dir(run, key)
        (run / "trained.txt").write_text(key if i < 3 else "resumed")
    assert (run / "trained.txt").read_text() == "resumed"
    assert (run.with_name(run.name + ".stale") / "trained.txt").read_text() == "k1"
    assert (run.with_name(run.name + ".stale-2") / "trained.txt").read_text() == "k2"
    assert not run.with_name(run.name + ".stale-3").exists()


def test_measure_throughput_times_the_model():
    train, infer = pipeline.measure_throughput("micro-vit", batch_size=8)
    assert 0 < train < infer


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def smoke_run(smoke_inline) -> tuple[Path, dict]:
    return smoke_inline  # conftest: one inline smoke run per session


def _is_png(path: Path) -> bool:
    with Image.open(path) as image:
        image.verify()
    return path.stat().st_size > 1000


def test_smoke_end_to_end_writes_every_output_well_formed(smoke_run):
    out, status = smoke_run
    assert list(status) == SMOKE_STEPS and set(status.values()) == {"done"}
    config = json.loads((out / "config.json").read_text())
    assert config["name"] == "smoke"
    results = out / "results"
    for name in GALLERY:
        table = pd.read_csv(results / f"{name}.csv")
        assert not table.empty, name
        assert _is_png(results / f"{name}.png"), name
        assert (results / f"{name}.pdf").read_bytes()[:5] == b"%PDF-", name  # vector beside PNG
    found = pd.read_csv(results / "findings.csv")
    assert {"holds", "decided_by", "low", "high", "learned", "n_seeds"} <= set(found.columns)
    assert set(found["decided_by"]) <= {"value", "init", "class-shuffle", "seed spread",
                                        "bootstrap", "undecided"}
    per_run = pd.read_csv(results / "accuracy_by_setup.csv")
    # natural-only has the same run directory name for both test domains; both are kept apart
    assert sorted(per_run["run"]) == [
        "quickdraw/lso-cipqrs-noquickdrawclasses-s0", "quickdraw/lso-real-only-s0",
        "sketch/lso-cipqrs-nosketchclasses-s0", "sketch/lso-real-only-s0"]
    assert per_run["heldout_top1"].between(0, 1).all() and (per_run["epoch"] == 2).all()
    accuracy = pd.read_csv(results / "accuracy.csv")
    assert set(accuracy["epoch"]) == {0, 1, 2}            # eval.epochs = "all"
    cka = pd.read_csv(results / "cka.csv")
    assert set(cka["kernel"]) == {"linear", "rbf"} and cka["value"].notna().all()
    assert (pd.read_csv(results / "cka_by_layer.csv")["pair_group"]
            .isin(["with test domain", "other pairs"]).all())
    patch = pd.read_csv(results / "patching_by_layer.csv")
    assert patch["pairing"].eq("class_mean").all() and patch["metric"].eq("logit_diff").all()
    has_ci = patch[["ci_low", "ci_high"]].notna().all(axis=1)
    assert has_ci[patch["reference"] == "none"].all()
    assert (patch.loc[has_ci, "ci_low"] <= patch.loc[has_ci, "ci_high"]).all()
    summary = pd.read_csv(results / "patching.csv")
    patched = summary[(summary["statistic"] == "patched") & (summary["granularity"] == "site")
                      & (summary["pairing"] == "class_mean") & (summary["direction"] == "denoising")
                      & (summary["class_name"] == "all") & (summary["site_kind"] == "layer")]
    keys = ["run", "site"] + (["reference"] if "reference" in summary.columns else [])
    merged = patch.merge(patched, on=keys, suffixes=("", "_patched"))
    assert len(merged) == len(patch) > 0    # effect = patched level - unpatched target level
    assert np.allclose(merged["value"], merged["value_patched"] - merged["receiver_mean"], atol=1e-5)
    nodes = pd.read_csv(results / "node_sharing_by_layer.csv")
    assert nodes["value"].between(0, 1).all()
    variants = pd.read_csv(results / "circuit_variants.csv")  # [analyses.circuit_variants]
    assert set(variants["variant"]) == {"mean-baseline"}
    assert set(variants["metric"]) == {"node_jaccard", "edge_jaccard", "wl_kernel"}
    assert {"none", "init", "class-shuffle"} <= set(variants["reference"])
    assert found["finding"].str.endswith("(WL kernel [mean-baseline])").any()
    assert found["finding"].str.contains(r"whole circuit \(edge Jaccard\)").any()
    report = (out / "report.md").read_text()
    assert "| quickdraw |" in report and "| sketch |" in report and "## Time per step" in report
    for name in GALLERY:
        assert f"results/{name}.png" in report
    html = (out / "report.html").read_text()
    assert html.count("<img") == len(GALLERY) and "<table" in html
    for run in ("quickdraw/lso-real-only-s0", "sketch/lso-cipqrs-nosketchclasses-s0"):
        assert (out / "runs" / run / "checkpoints" / "epoch_2.pt").is_file()


def test_headline_numbers_match_the_evaluation_table(smoke_run):
    """The report's numbers are the run's own zero-shot table, recomputed by hand here."""
    out, _ = smoke_run
    raw = pd.read_csv(out / "runs" / "quickdraw" / "lso-real-only-s0" / "eval" / "zero_shot.csv")
    rows = raw[(raw["epoch"] == 2) & (raw["eval_domain"] == "quickdraw")
               & (raw["class_subset"] == "held-out") & (raw["metric"] == "class_top1")]
    # top-1 over images = per-class accuracies weighted by image counts
    expected = float((rows["value"] * rows["n_images"]).sum() / rows["n_images"].sum())
    head = pd.read_csv(out / "results" / "headline.csv").set_index(["test_domain", "setup"])
    assert head.loc[("quickdraw", "natural-only"), "heldout_mean"] == pytest.approx(expected)


def test_second_run_skips_every_step(smoke_run):
    out, _ = smoke_run
    report = (out / "report.md").stat().st_mtime_ns
    status = pipeline.reproduce(load_config("smoke", out=out), progress=False, log=lambda m: None)
    assert set(status.values()) == {"skipped"}
    assert (out / "report.md").stat().st_mtime_ns == report


def test_interrupted_run_resumes_without_redoing_finished_steps(tmp_path, monkeypatch):
    """Interrupt the second training run after its first epoch (as Ctrl-C would); the rerun
    skips every finished step and continues that run from its epoch-1 checkpoint."""
    import training.train as train_module

    config = load_config("smoke", out=tmp_path / "out").replace(
        "analyses", cka=False, patching=False, circuits=False)
    real_train = train_module.train_clip
    interrupt_after_epoch_1(monkeypatch, train_module, "train_clip", "noquickdrawclasses")
    with pytest.raises(KeyboardInterrupt):
        pipeline.reproduce(config, progress=False, log=lambda m: None)
    run = tmp_path / "out" / "runs" / "quickdraw" / "lso-cipqrs-noquickdrawclasses-s0"
    epoch1 = run / "checkpoints" / "epoch_1.pt"
    assert epoch1.is_file() and not (run / "checkpoints" / "epoch_2.pt").exists()
    first_eval = tmp_path / "out" / "runs" / "quickdraw" / "lso-real-only-s0" / "eval" / "zero_shot.csv"
    stamp = first_eval.stat().st_mtime_ns

    monkeypatch.setattr(train_module, "train_clip", real_train)
    lines: list[str] = []
    status = pipeline.reproduce(config, progress=False, log=lines.append)
    assert [k for k, v in status.items() if v == "skipped"] == [
        "data", "mixtures", "train/quickdraw/natural-only/s0", "eval/quickdraw/natural-only/s0"]
    assert [k for k, v in status.items() if v == "done"] == [
        "train/quickdraw/cg-high/s0", "eval/quickdraw/cg-high/s0", "train/sketch/natural-only/s0",
        "eval/sketch/natural-only/s0", "train/sketch/cg-high/s0", "eval/sketch/cg-high/s0",
        "report"]
    assert first_eval.stat().st_mtime_ns == stamp
    log = pd.read_csv(run / "train_log.csv")
    assert sorted(log["epoch"].unique())[-1] == 2
    assert any("[5/11] train/quickdraw/cg-high/s0" in line for line in lines)


def test_changed_setting_moves_the_old_run_aside(tmp_path, smoke_run):
    """A changed training setting reruns training in a clean directory; the old run is kept
    as ``<run>.stale`` instead of being deleted or refused."""
    out, _ = smoke_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    config = load_config("smoke", out=copy).replace("train", epochs=3).replace(
        "analyses", cka=False, patching=False, circuits=False)
    pipeline.reproduce(config, progress=False, log=lambda m: None)
    runs = copy / "runs" / "quickdraw"
    assert (runs / "lso-real-only-s0" / "checkpoints" / "epoch_3.pt").is_file()
    assert (runs / "lso-real-only-s0.stale" / "checkpoints" / "epoch_2.pt").is_file()
    assert pd.read_csv(runs / "lso-real-only-s0" / "train_log.csv")["epoch"].max() == 3
    assert pd.read_csv(runs / "lso-real-only-s0.stale" / "train_log.csv")["epoch"].max() == 2


# ---------------------------------------------------------------- report tables


def _accuracy_rows(values: dict[tuple[str, str, int], tuple[float, float]]) -> pd.DataFrame:
    rows = []
    for (domain, setup, seed), (held, seen) in values.items():
        for epoch in (0, 3):
            scale = 1.0 if epoch == 3 else 0.0
            for subset, v in (("held-out", held), ("seen", seen)):
                common = dict(run=f"{domain}-{setup}-s{seed}", setup=setup, test_domain=domain,
                              seed=seed, epoch=epoch, class_subset=subset, class_name="*",
                              metric="top1", n_images=10)
                rows.append({**common, "eval_domain": domain, "value": v * scale})
                rows.append({**common, "eval_domain": "real", "value": 0.99})
                # one class of 100 images at the same accuracy: the findings' bootstrap
                rows.append({**common, "eval_domain": domain, "value": v * scale,
                             "metric": "class_top1", "class_name": f"c-{subset}", "n_images": 100})
    return pd.DataFrame(rows)


def test_headline_and_findings_by_hand():
    values = {
        ("sketch", "natural-only", 0): (0.10, 0.5), ("sketch", "natural-only", 1): (0.20, 0.5),
        ("sketch", "cg-high", 0): (0.30, 0.6), ("sketch", "cg-high", 1): (0.50, 0.6),
        ("sketch", "leave-out-domain", 0): (0.20, 0.4), ("sketch", "leave-out-domain", 1): (0.20, 0.4),
        ("quickdraw", "natural-only", 0): (0.01, 0.1), ("quickdraw", "cg-high", 0): (0.05, 0.3),
    }
    per_run = run_accuracy(_accuracy_rows(values))
    assert len(per_run) == len(values) and (per_run["epoch"] == 3).all()
    head = headline(per_run).set_index(["test_domain", "setup"])
    assert head.loc[("sketch", "cg-high"), "heldout_mean"] == pytest.approx(0.40)
    assert head.loc[("sketch", "cg-high"), "heldout_std"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
    assert head.loc[("sketch", "natural-only"), "n_seeds"] == 2
    assert np.isnan(head.loc[("quickdraw", "cg-high"), "heldout_std"])
    found = findings(head.reset_index(), chance=0.1, per_run=per_run,
                     accuracy=_accuracy_rows(values)).set_index(["finding", "test_domain"])
    assert found.loc[("diversity helps (CG high-div. > natural-only)", "sketch"), "holds"]
    assert found.loc[("diversity helps (leave-out-domain > natural-only)", "sketch"), "a"] == pytest.approx(0.2)
    assert not found.loc[("CG trails leave-out-domain", "sketch"), "holds"]
    quick = found.xs("quickdraw is hardest (lowest mean held-out top-1 over setups)", level=0)
    assert quick["holds"].item() and quick["a"].item() == pytest.approx(0.03)


def test_headline_tables_have_no_empty_column_and_honest_headings():
    """report.html's accuracy tables: no empty ``setup`` column from the pivot, and the
    heading says "mean ± std over seeds" only when a cell averages several seeds."""
    from domainlens.report import headline_display, headline_title

    one = {("sketch", "natural-only", 0): (0.1, 0.5), ("sketch", "cg-high", 0): (0.3, 0.6)}
    head = headline(run_accuracy(_accuracy_rows(one)))
    for subset in ("held-out", "seen"):
        shown = headline_display(head, subset)
        html = shown.to_html(index=False)
        assert "<th>setup</th>" not in html and "<th></th>" not in html
        assert list(shown.columns) == ["test domain", "natural-only", "CG high-div."]
        assert "±" not in headline_title(head, subset) and "one seed" in headline_title(head, subset)
    assert "±" not in headline_display(head).iloc[0, 1]
    two = {**one, ("sketch", "natural-only", 1): (0.2, 0.5)}
    head = headline(run_accuracy(_accuracy_rows(two)))
    assert "mean ± std over seeds" in headline_title(head)
    assert "mean over seeds" in headline_title(head, "seen")


def test_contact_sheet_table_holds_paths_relative_to_the_data_root(tmp_path):
    from fakedata import make_fake_domainnet

    from domainlens.report import contact_sheet_table

    root = make_fake_domainnet(tmp_path / "data", with_images=False)
    table = contact_sheet_table(root, n=3)
    assert len(table) == 6 * 3 and list(table.columns) == ["domain", "class_name", "path"]
    assert not any(p.startswith("/") or str(tmp_path) in p for p in table["path"])
    assert all((root / p).parent.is_dir() for p in table["path"])
    assert table["path"].iloc[0] == "clipart/aircraft_carrier/clipart_train_000_0000.png"


def test_committed_contact_sheet_has_relative_paths():
    table = pd.read_csv(Path(__file__).parent.parent / "figures" / "contact_sheet.csv")
    assert not table["path"].str.startswith("/").any()


def test_mechanism_findings_by_hand():
    """Pairs with the test domain (sketch) at 0.3, other quickdraw pairs at 0.2, the rest 0.8
    in the intermediate layers; first and last layers (all 1.0) are left out."""
    from itertools import combinations

    from domainlens.report import mechanism_findings

    rows = []
    for layer in range(4):
        for a, b in combinations(["clipart", "quickdraw", "real", "sketch"], 2):
            if layer in (0, 3):
                value = 1.0
            elif "sketch" in (a, b):
                value = 0.3
            elif "quickdraw" in (a, b):
                value = 0.2
            else:
                value = 0.8
            for seed in (0, 1):  # two seeds alike: no spread, so the seed spread decides
                rows.append(dict(run=f"r{seed}", seed=seed, test_domain="sketch", domain_a=a,
                                 domain_b=b, layer_index=layer, kernel="linear",
                                 class_subset="held-out", value=value))
    found = mechanism_findings(pd.DataFrame(rows), pd.DataFrame(), "held-out").set_index("finding")
    less = found.loc["less sharing with the test domain, intermediate layers (CKA)"]
    assert less["a"] == pytest.approx(0.3) and less["b"] == pytest.approx((0.2 + 0.8 + 0.2) / 3)
    assert less["holds"]
    least = found.loc["quickdraw shares least, intermediate layers (CKA)"]
    assert least["a"] == pytest.approx((0.3 + 0.2 + 0.2) / 3) and least["b"] == pytest.approx(0.3)
    assert least["holds"]


def test_circuit_variants_are_planned_beside_the_default_circuits(tmp_path):
    """Each [analyses.circuit_variants] entry is one more circuits step per analysed run, in
    its own folder, with its settings in its key; the report waits for it; a bad value is
    refused when the plan is built, before any work."""
    config = load_config("smoke", out=tmp_path)
    config = config.replace("analyses", circuit_variants={
        "ig": {"method": "ig", "edge_method": "ig", "steps": 3}, "top": {"fraction": 0.3}})
    steps = {s.id: s for s in pipeline.plan(config, progress=False)}
    runs = [r.id for r in analysed_runs(config)]
    for run in runs:
        default, ig = steps[f"circuits/{run}"], steps[f"circuits-ig/{run}"]
        top = steps[f"circuits-top/{run}"]
        assert ig.depends == default.depends
        assert ig.params["settings"]["method"] == "ig" and ig.params["settings"]["steps"] == 3
        assert top.params["settings"]["fraction"] == 0.3
        assert top.params["settings"]["method"] == default.params["settings"]["method"]
        assert len({default.key, ig.key, top.key}) == 3
        assert ig.outputs[0].parent.name == "circuits-ig"
        assert {f"circuits-ig/{run}", f"circuits-top/{run}"} <= set(steps["report"].depends)
    bad = config.replace("analyses", circuit_variants={"wide": {"fraction": 2.0}})
    with pytest.raises(ValueError, match=r"circuit_variants\] wide: .*fraction"):
        pipeline.plan(bad, progress=False)


def test_whole_circuit_and_variant_findings_by_hand():
    """Edge Jaccard (one value per domain pair, layer_index -1): quickdraw's pairs 0.1, the
    others 0.5, the untrained network 0.4 everywhere (so the excess over init is -0.3 vs
    0.1: learned); a variant's rows are named by it."""
    from itertools import combinations

    from domainlens.report import mechanism_findings

    rows = []
    for seed in (0, 1):
        for a, b in combinations(["clipart", "quickdraw", "real", "sketch"], 2):
            for reference, value in (("none", 0.1 if "quickdraw" in (a, b) else 0.5),
                                     ("init", 0.4)):
                rows.append(dict(run=f"r{seed}", seed=seed, test_domain="quickdraw",
                                 setup="cg-high", domain_a=a, domain_b=b, site="*",
                                 layer_index=-1, metric="edge_jaccard", statistic="mean",
                                 class_subset="held-out", reference=reference, value=value))
    found = mechanism_findings(pd.DataFrame(), pd.DataFrame(rows), "held-out",
                               variant="ig").set_index("finding")
    least = found.loc["quickdraw shares least, whole circuit (edge Jaccard [ig])"]
    # b: the lowest other domain's mean over its pairs, its pair with quickdraw included
    assert least["a"] == pytest.approx(0.1) and least["b"] == pytest.approx((0.1 + 1.0) / 3)
    assert least["holds"]
    less = found.loc["less sharing with the test domain, whole circuit (edge Jaccard [ig])"]
    assert less["a"] == pytest.approx(0.1) and less["b"] == pytest.approx(0.5)
