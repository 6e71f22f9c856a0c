"""Resumable steps: skipped when up to date, rerun when an input upstream changes."""

from __future__ import annotations

import pytest

from domainlens.steps import Step, is_done, read_seconds, run_steps


def make_steps(tmp_path, calls, a_param=1, fail_b=False):
    def write(name):
        def run():
            calls.append(name)
            if name == "b" and fail_b:
                raise RuntimeError("interrupted")
            (tmp_path / f"{name}.txt").write_text(name)
        return run

    return [
        Step("a", {"p": a_param}, write("a"), [tmp_path / "a.txt"]),
        Step("b", {}, write("b"), [tmp_path / "b.txt"], depends=["a"]),
        Step("c", {"q": 2}, write("c"), [tmp_path / "c.txt"]),
    ]


def test_second_run_skips_everything(tmp_path):
    calls = []
    state = tmp_path / "state"
    assert set(run_steps(make_steps(tmp_path, calls), state, log=lambda _: None).values()) \
        == {"done"}
    assert calls == ["a", "b", "c"]
    assert set(run_steps(make_steps(tmp_path, calls), state, log=lambda _: None).values()) \
        == {"skipped"}
    assert calls == ["a", "b", "c"]
    assert set(read_seconds(state)) == {"a", "b", "c"}


def test_changed_param_reruns_step_and_dependents_only(tmp_path):
    calls = []
    state = tmp_path / "state"
    run_steps(make_steps(tmp_path, calls), state, log=lambda _: None)
    calls.clear()
    status = run_steps(make_steps(tmp_path, calls, a_param=2), state, log=lambda _: None)
    assert calls == ["a", "b"]
    assert status == {"a": "done", "b": "done", "c": "skipped"}


def test_interrupted_run_resumes_without_redoing_finished_steps(tmp_path):
    calls = []
    state = tmp_path / "state"
    with pytest.raises(RuntimeError, match="interrupted"):
        run_steps(make_steps(tmp_path, calls, fail_b=True), state, log=lambda _: None)
    assert calls == ["a", "b"]
    calls.clear()
    status = run_steps(make_steps(tmp_path, calls), state, log=lambda _: None)
    assert calls == ["b", "c"]
    assert status["a"] == "skipped"


def test_deleted_output_reruns(tmp_path):
    calls = []
    state = tmp_path / "state"
    steps = make_steps(tmp_path, calls)
    run_steps(steps, state, log=lambda _: None)
    (tmp_path / "c.txt").unlink()
    assert not is_done(steps[2], state)
    calls.clear()
    run_steps(make_steps(tmp_path, calls), state, log=lambda _: None)
    assert calls == ["c"]


def test_missing_output_and_bad_dependency_are_errors(tmp_path):
    lazy = Step("lazy", {}, lambda: None, [tmp_path / "never.txt"])
    with pytest.raises(RuntimeError, match="without writing"):
        run_steps([lazy], tmp_path / "state", log=lambda _: None)
    orphan = Step("orphan", {}, lambda: None, depends=["ghost"])
    with pytest.raises(ValueError, match="depends on \\['ghost'\\]"):
        run_steps([orphan], tmp_path / "state", log=lambda _: None)


def test_changed_code_reruns_the_step(tmp_path, monkeypatch):
    """A step is keyed by the code of the modules it names: editing their code (not only a
    version constant) reruns it; editing a docstring or comment does not."""
    import sys

    from domainlens.steps import assign_keys

    package = tmp_path / "stepcode_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "analysis.py"
    module.write_text('"""Doc."""\nDEFAULT = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("stepcode_pkg", None)

    def key() -> str:
        step = Step("a", {"p": 1}, lambda: None, code=["stepcode_pkg.analysis"])
        assign_keys([step])
        return step.key

    before = key()
    module.write_text('"""Other words."""\n# a comment\nDEFAULT = 1\n')
    assert key() == before
    module.write_text('"""Doc."""\nDEFAULT = 2\n')
    assert key() != before
    calls = []
    state = tmp_path / "state"
    out = tmp_path / "a.txt"

    def run():
        calls.append(1)
        out.write_text("x")

    run_steps([Step("a", {}, run, [out], code=["stepcode_pkg"])], state, log=lambda _: None)
    run_steps([Step("a", {}, run, [out], code=["stepcode_pkg"])], state, log=lambda _: None)
    assert calls == [1]
    module.write_text('"""Doc."""\nDEFAULT = 3\n')
    run_steps([Step("a", {}, run, [out], code=["stepcode_pkg"])], state, log=lambda _: None)
    assert calls == [1, 1]
