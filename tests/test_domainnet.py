"""The DomainNet reader: layout, labels, quirks of the real dataset, bad input."""

from __future__ import annotations

import pytest
from fakedata import CLASSES, HELDOUT, make_fake_domainnet

from training.domainnet import available_domains, class_names, heldout_classes, load_index
from training.domains import PAPER_HELDOUT_CLASSES


@pytest.fixture()
def root(tmp_path):
    return make_fake_domainnet(tmp_path / "dn", with_images=False)


def test_index_rows_match_split_files(root):
    index = load_index(root)
    lines = sum(len((root / f"{d}_{s}.txt").read_text().splitlines())
                for d in available_domains(root) for s in ("train", "test"))
    assert len(index) == lines
    assert list(index.columns) == ["path", "domain", "class_name", "label", "split"]
    first = (root / "clipart_train.txt").read_text().splitlines()[0].split()
    row = index.iloc[0]
    assert row["path"] == str(root.resolve() / first[0])
    assert (row["domain"], row["split"], row["label"]) == ("clipart", "train", int(first[1]))


def test_labels_are_sorted_class_index_despite_painting_test_missing_a_class(root):
    assert class_names(root) == tuple(sorted(CLASSES))
    painting_test = load_index(root, ["painting"], ["test"])
    assert "bed" not in set(painting_test["class_name"])
    expected = {c: i for i, c in enumerate(sorted(CLASSES))}
    assert (painting_test["label"] == painting_test["class_name"].map(expected)).all()
    assert "the_eiffel_tower" in painting_test["class_name"].unique()  # underscores kept


def test_subsets_of_domains_splits_classes(root):
    index = load_index(root, ["sketch", "real"], ["train"], classes=["axe", "cat"])
    assert set(index["domain"]) == {"sketch", "real"}
    assert set(index["split"]) == {"train"}
    assert set(index["class_name"]) == {"axe", "cat"}


def test_heldout_classes_declared_or_paper(root, tmp_path):
    assert heldout_classes(root) == tuple(sorted(HELDOUT))
    (root / "heldout_classes.txt").unlink()
    with pytest.raises(ValueError, match="aircraft_carrier|not classes"):
        heldout_classes(root)  # the paper's 15 are not all classes of this root
    assert "traffic_light" in PAPER_HELDOUT_CLASSES


def test_root_without_split_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not DomainNet-shaped.*clipart_"):
        load_index(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_index(tmp_path / "nope")


def edit_split(path, edit) -> list[str]:
    """Rewrite a split file as ``edit(lines)`` returns it; returns the original lines."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(list(lines))) + "\n")
    return lines


def test_malformed_split_line_named(root):
    edit_split(root / "sketch_train.txt",
               lambda lines: [*lines[:3], "sketch/axe_without_label.png", *lines[4:]])
    with pytest.raises(ValueError, match=r"sketch_train.txt: malformed line 4"):
        load_index(root)


def test_wrong_label_named(root):
    def relabel(lines):
        rel, label = lines[0].split()
        return [f"{rel} {int(label) + 1}", *lines[1:]]

    edit_split(root / "real_test.txt", relabel)
    with pytest.raises(ValueError, match="line 1 gives label"):
        load_index(root)


def test_unknown_domain_split_class(root):
    with pytest.raises(ValueError, match="unknown domain.*photos.*expected"):
        load_index(root, ["photos"])
    with pytest.raises(ValueError, match=r"splits: unknown \['val'\]"):
        load_index(root, splits=["val"])
    with pytest.raises(ValueError, match="unknown class"):
        load_index(root, classes=["unicorn"])
    (root / "infograph_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="infograph_test.txt"):
        load_index(root, ["infograph"], ["test"])


def test_empty_split_file_is_an_empty_split(root):
    (root / "sketch_test.txt").write_text("")  # what `data synth --n-test 0` writes
    assert class_names(root) == tuple(sorted(CLASSES))
    assert load_index(root, ["sketch"], ["test"]).empty
    index = load_index(root)
    assert "sketch" in set(index["domain"]) and len(index[index["domain"] == "sketch"]) > 0
    assert set(index[index["domain"] == "sketch"]["split"]) == {"train"}


def test_three_field_split_line_names_the_file(root):
    edit_split(root / "real_train.txt", lambda lines: [*lines[:2], lines[2] + " extra", *lines[3:]])
    with pytest.raises(ValueError, match=r"real_train.txt: malformed line 3: .* extra'"):
        load_index(root)


def test_duplicate_split_line_is_refused_with_both_line_numbers(root):
    lines = edit_split(root / "clipart_test.txt", lambda lines: [*lines, "", lines[1]])
    with pytest.raises(ValueError, match=rf"clipart_test.txt: line {len(lines) + 2} repeats "
                       r"the image of line 2"):
        load_index(root)


def test_error_line_numbers_count_blank_lines(root):
    def relabel_after_blank(lines):
        rel, label = lines[1].split()
        return [lines[0], "", f"{rel} {int(label) + 1}", *lines[2:]]

    edit_split(root / "real_test.txt", relabel_after_blank)
    with pytest.raises(ValueError, match="real_test.txt: line 3 gives label"):
        load_index(root)
