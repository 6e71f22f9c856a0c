"""Mixture invariants: what each setup contains, size matching, manifests, determinism."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from fakedata import CLASSES, HELDOUT, make_fake_domainnet

from training.captions import TEMPLATES, make_captions
from training.domainnet import load_index
from training.domains import DOMAIN_TERMS, DOMAINS
from training.mixtures import (
    STANDARD_SETUPS,
    TEST_DOMAINS,
    MixtureSpec,
    build_mixture,
    build_mixtures,
    match_size,
    read_mixture,
    write_mixture,
)

LABEL = {c: i for i, c in enumerate(sorted(CLASSES))}
HELDOUT_LABELS = {LABEL[c] for c in HELDOUT}
SEEN_LABELS = set(LABEL.values()) - HELDOUT_LABELS


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_fake_domainnet(tmp_path_factory.mktemp("mix") / "dn")


def rendition(mixture):
    return mixture.rows[mixture.rows["domain"] != "base"]


def spec(root, setup, test_domain="quickdraw", **kw):
    return MixtureSpec(setup=setup, test_domain=test_domain, data_root=str(root), **kw)


@pytest.mark.parametrize("test_domain", TEST_DOMAINS)
@pytest.mark.parametrize("setup", ["cg-low", "cg-high"])
def test_cg_has_no_heldout_and_all_seen_classes_of_test_domain(root, setup, test_domain):
    rows = rendition(build_mixture(spec(root, setup, test_domain)))
    in_d = rows[rows["domain"] == test_domain]
    assert set(in_d["label"]).isdisjoint(HELDOUT_LABELS)
    assert set(in_d["label"]) == SEEN_LABELS
    if setup == "cg-high":  # other domains keep their held-out classes
        other = "sketch" if test_domain != "sketch" else "clipart"
        assert set(rows[rows["domain"] == other]["label"]) >= HELDOUT_LABELS


@pytest.mark.parametrize("test_domain", TEST_DOMAINS)
def test_leave_out_domain_has_no_test_domain_image(root, test_domain):
    rows = rendition(build_mixture(spec(root, "leave-out-domain", test_domain)))
    assert test_domain not in set(rows["domain"])
    assert set(rows["domain"]) == set(DOMAINS) - {test_domain}
    assert not rows["filepath"].str.contains(f"/{test_domain}/").any()


@pytest.mark.parametrize("test_domain", TEST_DOMAINS)
def test_paper_rule_gives_every_setup_the_cg_low_size(root, test_domain):
    index = load_index(root, splits=("train",))
    n_real = (index["domain"] == "real").sum()
    in_d = index[index["domain"] == test_domain]
    target = n_real + (~in_d["class_name"].isin(HELDOUT)).sum()
    sizes = {s: len(rendition(build_mixture(spec(root, s, test_domain))))
             for s in STANDARD_SETUPS}
    assert sizes.pop("natural-only") == n_real  # smaller than target: kept whole, as the paper
    assert set(sizes.values()) == {target}
    assert len(rendition(build_mixture(spec(root, "domain-interp", test_domain,
                                            other_domains=("painting",) if test_domain !=
                                            "painting" else ("clipart",))))) == target


def test_fixed_size_rule_equal_across_setups_and_test_domains(root):
    sizes = {len(rendition(build_mixture(spec(root, s, d, size_rule="fixed", size=40))))
             for s in STANDARD_SETUPS for d in TEST_DOMAINS}
    assert sizes == {40}
    with pytest.raises(ValueError, match="size 100000 is larger than the data"):
        build_mixture(spec(root, "natural-only", size_rule="fixed", size=100_000))


def test_match_size_hand_worked():
    # groups (real, a): 6 rows, (real, b): 3, (sketch, a): 1 -> target 5, shrink 1/2:
    # ceil keeps 3, 2, 1 = 6; one too many: trim the largest group -> 2, 2, 1.
    rows = pd.DataFrame({
        "domain": ["real"] * 9 + ["sketch"],
        "class_name": ["a"] * 6 + ["b"] * 3 + ["a"],
        "path": [f"p{i}" for i in range(10)],
    })
    kept = match_size(rows, 5)
    assert kept["path"].tolist() == ["p0", "p1", "p6", "p7", "p9"]
    assert match_size(rows, 10) is rows
    with pytest.raises(ValueError, match="larger than the data"):
        match_size(rows, 11)


def test_allow_adds_expected_count(root):
    index = load_index(root, ["quickdraw"], ["train"])
    per_class = index[index["class_name"].isin(HELDOUT)].groupby("class_name").size()
    for p in (0.05, 0.3, 0.5, 1.0):
        rows = rendition(build_mixture(spec(root, "cg-high", allow=p, size_rule="none")))
        in_d = rows[(rows["domain"] == "quickdraw") & rows["label"].isin(HELDOUT_LABELS)]
        expected = {LABEL[c]: math.ceil(p * n) for c, n in per_class.items()}
        assert in_d.groupby("label").size().to_dict() == expected
    assert spec(root, "cg-high", allow=0.1).name == "lso-cipqrs-noquickdrawclasses-allow0.1"


def test_names_follow_the_paper(root):
    names = {s: spec(root, s).name for s in STANDARD_SETUPS}
    assert names == {
        "natural-only": "lso-real-only", "cg-low": "lso-qr-noquickdrawclasses",
        "cg-high": "lso-cipqrs-noquickdrawclasses",
        "leave-out-domain": "lso-ciprs-noquickdrawclasses",
        "upper-low": "lso-qr-noquickdrawclasses-pseudo",
        "upper-high": "lso-cipqrs-noquickdrawclasses-pseudo",
    }
    assert spec(root, "cg-high", captions="aligned").name.endswith("-aligned")
    assert spec(root, "domain-interp", other_domains=("sketch",)).name == \
        "lso-qrs-noquickdrawclasses"


def test_base_set_included_whole(root):
    base = pd.read_csv(root / "base.tsv", sep="\t")
    for setup in STANDARD_SETUPS:
        rows = build_mixture(spec(root, setup)).rows
        assert rows[rows["domain"] == "base"]["filepath"].tolist() == base["filepath"].tolist()
    rows = build_mixture(spec(root, "cg-low", include_base=False)).rows
    assert "base" not in set(rows["domain"])


def test_manifest_counts_equal_tsv(root, tmp_path):
    tsv = write_mixture(build_mixture(spec(root, "cg-high", "sketch")), tmp_path)
    loaded = read_mixture(tsv)
    rows, manifest = loaded.rows, loaded.manifest
    assert manifest["content_hash"] == hashlib.sha256(tsv.read_bytes()).hexdigest()
    counts = manifest["counts"]
    assert counts["total"] == len(rows)
    assert counts["base"] == (rows["domain"] == "base").sum()
    for domain, by_subset in counts["by_domain"].items():
        sub = rows[rows["domain"] == domain]
        assert sum(by_subset.values()) == len(sub)
        assert by_subset.get("held-out", 0) == sub["label"].isin(HELDOUT_LABELS).sum()
    assert manifest["spec"]["heldout"] == sorted(HELDOUT)
    assert json.loads(tsv.with_suffix(".json").read_text()) == manifest


def test_same_seed_same_bytes_other_seed_other_captions(root, tmp_path):
    a = write_mixture(build_mixture(spec(root, "cg-high", selection="random", seed=3)),
                      tmp_path / "a")
    b = write_mixture(build_mixture(spec(root, "cg-high", selection="random", seed=3)),
                      tmp_path / "b")
    c = write_mixture(build_mixture(spec(root, "cg-high", selection="random", seed=4)),
                      tmp_path / "c")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_random_selection_differs_from_first(root):
    first = rendition(build_mixture(spec(root, "upper-high")))
    random = rendition(build_mixture(spec(root, "upper-high", selection="random", seed=1)))
    assert len(first) == len(random)
    assert set(first["filepath"]) != set(random["filepath"])


def test_aligned_captions_never_name_a_domain(root):
    rows = build_mixture(spec(root, "cg-high", captions="aligned")).rows
    words = {w for terms in DOMAIN_TERMS.values() for w in terms}
    for title in rows["title"]:
        assert not any(w in title for w in words), title
    domain_rows = rendition(build_mixture(spec(root, "cg-high")))
    assert any(w in t for t in domain_rows["title"] for w in words)  # the check can fail


def test_captions_templates_terms_and_stops():
    keys = [f"infograph/traffic_light/{i}.png" for i in range(2000)]
    caps = make_captions(["traffic light"] * 2000, ["infograph"] * 2000, keys, 0)
    stems = {t.format(a="@", term="#", cls="traffic light") for t in TEMPLATES}
    assert 0.4 < np.mean([c.endswith(".") for c in caps]) < 0.6
    seen_terms = set()
    for c in caps:
        for term in ("image", "picture", "infograph", "informational chart"):
            art = "an" if term[0] in "aeiou" else "a"
            for stem in stems:
                filled = stem.replace("@", art).replace("#", term)
                if c in (filled, filled[:-1]):
                    seen_terms.add(term)
                    break
            else:
                continue
            break
        else:
            raise AssertionError(f"caption {c!r} matches no template")
    assert seen_terms == {"image", "picture", "infograph", "informational chart"}


def test_openclip_csvdataset_reads_written_tsv(root, tmp_path):
    from open_clip_train.data import CsvDataset

    tsv = write_mixture(build_mixture(spec(root, "cg-low")), tmp_path)
    dataset = CsvDataset(str(tsv), transforms=lambda im: np.asarray(im), img_key="filepath",
                         caption_key="title", sep="\t", tokenizer=lambda t: t)
    rows = read_mixture(tsv).rows
    assert len(dataset) == len(rows)
    image, text = dataset[len(dataset) - 1]
    assert image.shape == (8, 8, 3)
    assert text == rows["title"].iloc[-1]


def test_build_mixtures_writes_all_setups_and_domains(root, tmp_path):
    written = build_mixtures(root, tmp_path, progress=False)
    assert len(written) == len(STANDARD_SETUPS) * len(TEST_DOMAINS)
    assert all(p.is_file() and p.with_suffix(".json").is_file() for p in written)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"setup": "cg-mid"}, "unknown setup 'cg-mid'.*cg-low"),
    ({"test_domain": "photo"}, "unknown test domain 'photo'.*quickdraw"),
    ({"test_domain": "real"}, "unknown test domain 'real'"),
    ({"size_rule": "huge"}, "size_rule must be one of"),
    ({"size_rule": "fixed"}, "size is required"),
    ({"allow": 1.5}, "allow must be in"),
    ({"setup": "upper-high", "allow": 0.1}, "allow adds held-out"),
    ({"setup": "domain-interp"}, "domain-interp needs other_domains"),
    ({"setup": "domain-interp", "other_domains": ("real",)}, "domain-interp needs"),
    ({"other_domains": ("clip-art",)}, "unknown domain"),
    ({"captions": "fancy"}, "unknown caption style"),
    ({"selection": "best"}, "selection must be one of"),
])
def test_bad_spec_errors(root, kwargs, match):
    options = {"setup": "cg-high", "test_domain": "quickdraw", **kwargs}
    with pytest.raises(ValueError, match=match):
        MixtureSpec(data_root=str(root), **options)


def test_class_lists_that_leave_nothing(root, tmp_path):
    with pytest.raises(ValueError, match="leaves no seen classes"):
        build_mixture(spec(root, "cg-low", heldout=CLASSES))
    with pytest.raises(ValueError, match="empty"):
        build_mixture(spec(root, "cg-low", heldout=()))
    with pytest.raises(ValueError, match=r"\['unicorn'\] are not classes"):
        build_mixture(spec(root, "cg-low", heldout=("unicorn",)))
    with pytest.raises(FileNotFoundError, match="base set"):
        build_mixture(spec(root, "cg-low", base_tsv=str(tmp_path / "nope.tsv")))


def test_empty_or_missing_mixture_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_mixture(tmp_path / "none.tsv")
    (tmp_path / "empty.tsv").write_text("filepath\ttitle\tdomain\tlabel\n")
    with pytest.raises(ValueError, match="no rows"):
        read_mixture(tmp_path / "empty.tsv")


def test_one_mixture_type_is_built_written_and_read(root, tmp_path):
    """build_mixture, write_mixture and read_mixture share one Mixture type; what is read back
    is what was written (rows, manifest, hash)."""
    import hashlib

    from training import trainset
    from training.mixtures import Mixture

    assert trainset.Mixture is Mixture and trainset.read_mixture is read_mixture
    built = build_mixture(spec(root, "cg-low"))
    assert isinstance(built, Mixture) and built.tsv is None
    tsv = write_mixture(built, tmp_path)
    loaded = read_mixture(tsv)
    assert type(loaded) is type(built)
    assert loaded.name == built.name and loaded.spec == built.spec
    assert loaded.sha256 == built.sha256 == hashlib.sha256(tsv.read_bytes()).hexdigest()
    assert loaded.manifest["content_hash"] == loaded.sha256 and loaded.tsv == built.tsv
    assert loaded.rows["label"].tolist() == built.rows["label"].tolist()
    assert not list(tmp_path.rglob(".*tmp*"))
