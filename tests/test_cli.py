"""The command line: every command has --help; data commands report bad input clearly."""

from __future__ import annotations

import argparse

import pytest
from fakedata import make_fake_domainnet

from domainlens.cli import build_parser, main
from training.imagecheck import check_data_root, image_error


def command_names() -> list[str]:
    parser = build_parser()
    return list(parser._subparsers._group_actions[0].choices)  # noqa: SLF001


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in command_names():
        assert name in out


@pytest.mark.parametrize("argv", [
    *[[name, "--help"] for name in ("data", "mixtures")],
    ["data", "synth", "--help"], ["data", "check", "--help"], ["data", "info", "--help"],
])
def test_every_command_has_help(argv, capsys):
    """The help of a command is its own: usage names the full command, the command's
    description is printed, and so is every option it accepts."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    path = argv[:-1]
    assert out.startswith(f"usage: domainlens {' '.join(path)} ")
    parser = parser_for(path)
    assert parser.description and " ".join(parser.description.split()[:4]) in " ".join(out.split())
    for action in parser._actions:  # noqa: SLF001
        for flag in action.option_strings:
            assert flag in out, (path, flag)


def parser_for(path: list[str]) -> argparse.ArgumentParser:
    """The sub-parser of ``domainlens <path...>``."""
    parser = build_parser()
    for name in path:
        (subparsers,) = [a for a in parser._actions  # noqa: SLF001
                         if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
        parser = subparsers.choices[name]
    return parser


def test_all_registered_commands_have_help(capsys):
    for name in command_names():
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0, name


def test_mixtures_command_writes_and_errors(tmp_path, capsys):
    root = make_fake_domainnet(tmp_path / "dn", with_images=False)
    out = tmp_path / "mix"
    assert main(["mixtures", "--data", str(root), "--out", str(out), "--setup", "cg-high",
                 "--test-domain", "sketch", "--quiet"]) == 0
    assert (out / "sketch" / "lso-cipqrs-nosketchclasses.tsv").is_file()
    assert main(["mixtures", "--data", str(root), "--setup", "cg-hi", "--quiet"]) == 2
    assert "unknown setup 'cg-hi'" in capsys.readouterr().err
    assert main(["mixtures", "--data", str(tmp_path), "--quiet"]) == 2
    assert "not DomainNet-shaped" in capsys.readouterr().err


def test_data_check_lists_unreadable_images_by_path(tmp_path, capsys):
    root = make_fake_domainnet(tmp_path / "dn")
    assert main(["data", "check", str(root), "--quiet", "--workers", "1"]) == 0
    corrupt = next((root / "sketch" / "axe").iterdir())
    corrupt.write_bytes(corrupt.read_bytes()[:40])  # truncated PNG
    missing = next((root / "real" / "banana").iterdir())
    missing.unlink()
    garbage = root / "base" / "base_002.png"
    garbage.write_bytes(b"not an image")
    assert main(["data", "check", str(root), "--quiet", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    for path in (corrupt, missing, garbage):
        assert str(path) in out
    assert "3 unreadable image(s)" in out
    bad = check_data_root(root, progress=False, workers=2)
    assert set(bad["path"]) == {str(corrupt), str(missing), str(garbage)}
    assert image_error(str(missing)) == "missing file"


def test_data_info(tmp_path, capsys):
    root = make_fake_domainnet(tmp_path / "dn", with_images=False)
    assert main(["data", "info", str(root)]) == 0
    assert "8 classes, 2 held out: axe, traffic_light" in capsys.readouterr().out


def test_data_commands_accept_an_empty_split_file(tmp_path, capsys):
    # `data synth --n-test 0` writes empty test splits; they used to crash with KeyError: 0.
    root = make_fake_domainnet(tmp_path / "dn")
    (root / "sketch_test.txt").write_text("")
    assert main(["data", "info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "8 classes" in out and "sketch" in out
    assert main(["data", "check", str(root), "--quiet", "--workers", "1"]) == 0
    assert "0 unreadable image(s)" in capsys.readouterr().out
    assert main(["mixtures", "--data", str(root), "--out", str(tmp_path / "mix"), "--setup",
                 "cg-high", "--test-domain", "sketch", "--quiet"]) == 0
    assert (tmp_path / "mix" / "sketch" / "lso-cipqrs-nosketchclasses.tsv").is_file()


def _below_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    return blocker


@pytest.mark.parametrize("command", ["mixtures", "data synth"])
def test_unwritable_output_is_one_line_naming_the_path(tmp_path, capsys, monkeypatch, command):
    # Tests run as root (chmod cannot make a folder read-only for them): an output path below
    # a regular file, then renames failing with EROFS, stand in for a read-only folder.
    import errno
    import os

    root = make_fake_domainnet(tmp_path / "dn", with_images=False)

    def argv(out):
        if command == "mixtures":
            return ["mixtures", "--data", str(root), "--out", str(out), "--setup", "cg-high",
                    "--test-domain", "sketch", "--quiet"]
        return ["data", "synth", str(out), "--image-size", "16", "--n-train", "1", "--n-test",
                "0", "--n-base", "0", "--classes", "axe", "--workers", "1", "--quiet"]

    blocked = _below_a_file(tmp_path) / "out"
    assert main(argv(blocked)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"domainlens {command.split()[0]}: error: ")
    assert str(blocked) in err and "Not a directory" in err
    assert len(err.strip().splitlines()) == 1

    def read_only(src, dst, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", read_only)
    out = tmp_path / "out"
    assert main(argv(out)) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(out) in err and ("read-only" in err.lower())
