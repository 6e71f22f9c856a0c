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
