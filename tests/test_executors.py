"""``reproduce --executor local|slurm``: the steps through submitit give the inline results;
a killed job resumes submitting only unfinished steps; --jobs 2 equals --jobs 1; the SLURM
dry run and configuration; [run] validation; failure records."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest
import torch
from fakedata import make_fake_domainnet

from domainlens import executors, pipeline
from domainlens.cli import main
from domainlens.config import load_config
from domainlens.steps import (
    Step,
    assign_keys,
    failure_path,
    prune_failures,
    read_failures,
    run_steps,
    write_failure,
    write_record,
)

#: The smoke config's quickdraw runs only, no analyses: two train + eval jobs.
QUICKDRAW_ONLY = dict(mixtures={"test_domains": ["quickdraw"]},
                      analyses={"cka": False, "patching": False, "circuits": False})


def smoke(out: Path, **run) -> object:
    return load_config("smoke", out=out).replace("run", **run) if run else load_config(
        "smoke", out=out)


def quickdraw_only(out: Path, **run) -> object:
    config = smoke(out, **run)
    for section, values in QUICKDRAW_ONLY.items():
        config = config.replace(section, **values)
    return config


def checkpoints(out: Path, pattern: str = "runs/*/*/checkpoints/epoch_*.pt") -> dict:
    return {str(p.relative_to(out)): torch.load(p, weights_only=False)["state_dict"]
            for p in sorted(out.glob(pattern))}


def assert_same_checkpoints(a: dict, b: dict) -> None:
    assert a and set(a) == set(b)
    for name, tensors in a.items():
        assert tensors.keys() == b[name].keys()
        for key, value in tensors.items():
            assert torch.equal(value, b[name][key]), f"{name}: {key} differs"


def headline(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results" / "headline.csv")


@pytest.fixture(autouse=True)
def fast_plan(monkeypatch):
    """Model speeds only feed the time estimates (not the step keys): skip timing them."""
    monkeypatch.setattr(pipeline, "measure_throughput", lambda *a, **k: (100.0, 400.0))


@pytest.fixture(scope="module")
def local_smoke(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """The smoke config through submitit's local executor, 2 jobs at a time; of the three
    analyses only patching (they share the job path; CKA and circuits would add a minute)."""
    out = tmp_path_factory.mktemp("local") / "out"
    config = smoke(out, executor="local", jobs=2).replace("analyses", cka=False, circuits=False)
    lines: list[str] = []
    status = pipeline.reproduce(config, progress=False, log=lines.append)
    yield out, status, lines
    shutil.rmtree(out.parent, ignore_errors=True)  # 130 MB: CI disks may be small


# ---------------------------------------------------------------- local executor


def test_local_executor_gives_the_inline_results(local_smoke, smoke_inline):
    """Real subprocesses (submitit's LocalExecutor): the same headline table, checkpoint
    tensors, accuracy and patching tables as the inline run, and a record for every step."""
    out, status, lines = local_smoke
    inline, _ = smoke_inline
    assert set(status.values()) == {"done"} and len(status) == 12
    pd.testing.assert_frame_equal(headline(out), headline(inline))
    assert_same_checkpoints(checkpoints(out), checkpoints(inline))
    for table in ("accuracy.csv", "patching.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / "results" / table),
                                      pd.read_csv(inline / "results" / table))
    assert len(list((out / ".state").glob("*.json"))) == 12
    # data, mixtures and the report ran in the driver, the rest as 5 jobs with their logs
    jobs = [line for line in lines if line.startswith("job ")]
    assert len(jobs) == 5 and all("(log " in line for line in jobs)
    assert "train/quickdraw/cg-high/s0 + eval/quickdraw/cg-high/s0" in "\n".join(jobs)
    logs = [Path(line.rsplit("(log ", 1)[1].rstrip(")")) for line in jobs]
    assert all(p.is_file() for p in logs)
    threads = executors.local_threads(2)
    assert f"at most 2 job(s) at a time, {threads} torch thread(s) each" in lines[0]
    assert any(line.startswith("[11/12] patching/quickdraw/cg-high/s0: done in")
               and "(job " in line for line in lines)


def test_jobs_2_equals_jobs_1(local_smoke, tmp_path):
    """One job at a time gives the tensors and accuracies of two at a time."""
    out2, _, _ = local_smoke
    out1 = tmp_path / "out"
    lines: list[str] = []
    status = pipeline.reproduce(quickdraw_only(out1, executor="local", jobs=1), progress=False,
                                log=lines.append)
    assert set(status.values()) == {"done"}
    assert_same_checkpoints(checkpoints(out1), checkpoints(out2, "runs/quickdraw/*/checkpoints/*.pt"))
    two = headline(out2)
    pd.testing.assert_frame_equal(headline(out1),
                                  two[two["test_domain"] == "quickdraw"].reset_index(drop=True))
    # one at a time: the second job is submitted after the first one's steps are done
    jobs = [i for i, line in enumerate(lines) if line.startswith("job ")]
    first_done = next(i for i, line in enumerate(lines)
                      if line.startswith("[4/7] eval/quickdraw/natural-only/s0: done"))
    assert len(jobs) == 2 and jobs[0] < first_done < jobs[1]
    assert f"at most 1 job(s) at a time, {executors.local_threads(1)} torch" in lines[0]


def test_killed_job_resumes_submitting_only_unfinished_steps(tmp_path, monkeypatch, smoke_inline):
    """One training job dies midway (os._exit after its first epoch, as a kill leaves it): the
    other job finishes, the failure is printed with its log and kept as a failure record that
    the report of the finished steps lists; the rerun submits only the unfinished steps,
    resumes the run from its epoch-1 checkpoint and ends with the inline run's tensors."""
    out = tmp_path / "out"
    config = quickdraw_only(out, executor="local", jobs=2)
    killed = "train/quickdraw/cg-high/s0"
    real_plan = pipeline.plan

    def faulty_plan(cfg, progress=True):
        steps = real_plan(cfg, progress)
        step = next(s for s in steps if s.id == killed)
        run = next(r for r in pipeline.run_plans(cfg) if f"train/{r.train_id}" == killed)
        settings = pipeline._train_config(cfg, run, False)

        def die_after_one_epoch():
            import dataclasses
            import os

            from domainlens import pipeline as p

            p._train(dataclasses.replace(settings, stop_after_epoch=1), 1, step)
            os._exit(3)

        step.run = die_after_one_epoch
        return steps

    monkeypatch.setattr(pipeline, "plan", faulty_plan)
    lines: list[str] = []
    with pytest.raises(executors.StepsFailed) as error:
        pipeline.reproduce(config, progress=False, log=lines.append)
    status = error.value.status
    assert status[killed] == "failed" and status["eval/quickdraw/natural-only/s0"] == "done"
    assert status["eval/quickdraw/cg-high/s0"] == "blocked" and status["report"] == "blocked"
    printed = "\n".join(lines)
    assert f"[5/7] {killed}: FAILED in job" in printed and "ended without a result" in printed
    [record] = read_failures(out / ".state")
    assert record["id"] == killed and record["job"] and Path(record["log"]).is_file()
    assert f"; log: {record['log']}" in printed
    run_dir = out / "runs" / "quickdraw" / "lso-cipqrs-noquickdrawclasses-s0"
    epoch1 = run_dir / "checkpoints" / "epoch_1.pt"
    assert epoch1.is_file() and not (run_dir / "checkpoints" / "epoch_2.pt").exists()
    report = (out / "report.md").read_text()  # of the finished steps, the failure listed
    assert "## Failed steps" in report and killed in report and record["log"] in report
    assert "| quickdraw |" in report
    assert "1 step(s) failed" in str(error.value) and "rerun the same command" in str(error.value)

    monkeypatch.setattr(pipeline, "plan", real_plan)
    epoch0 = run_dir / "checkpoints" / "epoch_0.pt"  # rewritten only by a run from scratch
    stamp = epoch0.stat().st_mtime_ns
    lines = []
    status = pipeline.reproduce(config, progress=False, log=lines.append)
    assert [k for k, v in status.items() if v == "done"] == [
        killed, "eval/quickdraw/cg-high/s0", "report"]
    assert [line.split(": ", 1)[1].split(" (log")[0] for line in lines
            if line.startswith("job ")] == [f"{killed} + eval/quickdraw/cg-high/s0"]
    assert epoch0.stat().st_mtime_ns == stamp  # resumed from epoch 1, not retrained
    assert pd.read_csv(run_dir / "train_log.csv")["epoch"].max() == 2
    assert read_failures(out / ".state") == []
    assert "Failed steps" not in (out / "report.md").read_text()
    inline, _ = smoke_inline
    assert_same_checkpoints(checkpoints(out),
                            checkpoints(inline, "runs/quickdraw/*/checkpoints/*.pt"))


def light_steps(folder: Path, fail: bool) -> list[Step]:
    """Three steps without torch: train/a writes a file, eval/a (raising if ``fail``) and
    cka/a need it."""
    def writer(path: Path, fail: bool = False):
        def run():
            if fail:
                raise RuntimeError("injected evaluation failure")
            path.write_text("ok")
        return run

    steps = [Step(id="train/a", params={}, run=writer(folder / "train.txt"),
                  outputs=[folder / "train.txt"]),
             Step(id="eval/a", params={}, run=writer(folder / "eval.txt", fail),
                  outputs=[folder / "eval.txt"], depends=["train/a"]),
             Step(id="cka/a", params={}, run=writer(folder / "cka.txt"),
                  outputs=[folder / "cka.txt"], depends=["train/a"])]
    assign_keys(steps)
    return steps


def test_a_job_that_raises_is_reported_and_only_its_step_resubmitted(tmp_path):
    """A step raising in its job: the other steps finish, the error line and the log path
    are printed and recorded (the log holds the traceback); the rerun submits that step
    alone."""
    folder = tmp_path / "files"
    folder.mkdir()
    config = load_config("smoke", out=tmp_path / "out").replace("run", executor="local", jobs=2)
    lines: list[str] = []
    with pytest.raises(executors.StepsFailed) as error:
        executors.run_with_executor(config, light_steps(folder, fail=True), log=lines.append)
    assert error.value.status == {"train/a": "done", "eval/a": "failed", "cka/a": "done"}
    [record] = read_failures(tmp_path / "out" / ".state")
    assert record["error"] == "RuntimeError: injected evaluation failure"
    assert "Traceback" in Path(record["log"]).read_text()
    assert (f"[2/3] eval/a: FAILED in job {record['job']}: RuntimeError: injected evaluation "
            f"failure; log: {record['log']}") in lines
    lines = []
    status = executors.run_with_executor(config, light_steps(folder, fail=False), log=lines.append)
    assert status == {"train/a": "skipped", "eval/a": "done", "cka/a": "skipped"}
    assert [line for line in lines if line.startswith("job ")][0].startswith(
        "job ") and sum(line.startswith("job ") for line in lines) == 1
    assert read_failures(tmp_path / "out" / ".state") == []


def test_ctrl_c_cancels_the_running_jobs(tmp_path):
    class Backend(executors.PlanBackend):
        cancelled: list = []

        def done(self, running):
            return False

        def wait(self):
            raise KeyboardInterrupt

        def cancel(self, running):
            self.cancelled += [r.unit.label for r in running]

    config = load_config("smoke", out=tmp_path / "out").replace("run", executor="local", jobs=2)
    steps = light_steps(tmp_path, fail=False)
    backend = Backend(config, tmp_path / "state")
    driver = executors._Driver(steps, tmp_path / "state", backend, lambda m: None,
                               backend.is_finished, backend.run_here)
    with pytest.raises(KeyboardInterrupt):
        driver.run()
    assert backend.cancelled == ["train/a + eval/a"]


# ---------------------------------------------------------------- threads and GPUs


def test_jobs_divide_the_cores_and_the_gpus(monkeypatch):
    monkeypatch.setattr(executors, "cpu_count", lambda: 2)
    assert executors.local_threads(2) == 1 and executors.local_threads(1) == 2
    cpu = load_config("smoke", out="/tmp/x").replace("run", executor="local", jobs=2)
    assert executors.local_slots(cpu, []) == 2
    assert executors.local_slots(cpu.replace("run", jobs=0), []) == executors.LOCAL_CPU_JOBS
    gpu = cpu.replace("train", device="auto")
    assert executors.local_slots(gpu.replace("run", jobs=0), [0, 1]) == 2  # one per GPU
    assert executors.local_slots(gpu.replace("run", jobs=4), [0, 1]) == 2
    assert executors.local_parameters(gpu, 1)["visible_gpus"] == (1,)
    assert executors.local_parameters(gpu, 1)["gpus_per_node"] == 1
    assert executors.local_parameters(cpu, None)["gpus_per_node"] == 0
    # the driver's CUDA_VISIBLE_DEVICES carries over: jobs are given its GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert executors.visible_gpus(gpu) == [2, 3] and executors.visible_gpus(cpu) == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pipeline.analysis_device(gpu) == "cuda"


def test_torch_threads_keeps_within_the_jobs_share(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv(pipeline.THREADS_ENV, "1")
    for configured in (0, 1, 4):
        with pipeline.torch_threads(configured):
            assert torch.get_num_threads() == 1
    monkeypatch.delenv(pipeline.THREADS_ENV)
    assert pipeline.thread_count(0) == 0 and pipeline.thread_count(3) == 3
    with pipeline.torch_threads(0):
        assert torch.get_num_threads() == before


# ---------------------------------------------------------------- SLURM


def fake_slurm(tmp_path: Path, monkeypatch) -> None:
    """``srun`` and ``sbatch`` stand-ins on PATH: submitit finds a cluster, and a submission
    only writes its sbatch file (nothing runs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", "exit 0"), ("sbatch", "echo Submitted batch job 4242")):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_paper_dry_run_with_slurm_lists_arrays_and_resources(tmp_path, capsys):
    """Every training run (with its evaluation) in one job array, then one array per analysis
    kind, each with the SLURM options as submitit writes them; nothing is submitted."""
    root = make_fake_domainnet(tmp_path / "domainnet", with_images=False)
    out = tmp_path / "out"
    assert main(["reproduce", "paper", "--dry-run", "--out", str(out), "--data-root", str(root),
                 "--base-tsv", str(root / "base.tsv"), "--executor", "slurm",
                 "--partition", "gpu", "--account", "lab", "--time", "600", "--mem-gb", "64",
                 "--cpus-per-job", "8", "--slurm", "qos=high"]) == 0
    printed = capsys.readouterr().out
    config = load_config("paper", out=out).replace("data", root=str(root),
                                                   base_tsv=str(root / "base.tsv"))
    kinds = pd.Series([s.id.split("/")[0] for s in pipeline.plan(config)]).value_counts()
    n_train = int(kinds["train"])
    analyses = [k for k in ("cka", "patching", "circuits", "embeddings", "features", "aligned")
                if k in kinds]
    lines = printed.splitlines()
    plan = lines[lines.index(next(x for x in lines if x.startswith("executor slurm"))):]
    n_jobs = n_train + sum(int(kinds[k]) for k in analyses)
    assert plan[0].startswith(f"executor slurm: {1 + len(analyses)} submission(s) of "
                              f"{n_jobs} job(s)")
    assert plan[1:3] == ["  in this process: data", "  in this process: mixtures"]
    assert plan[3] == (f"  submission 1: job array paper-train, {n_train} task(s), each a run's "
                       "training then its evaluation")
    resources = plan[4].split()
    for flag in (f"--array=0-{n_train - 1}%{min(n_train, 256)}", "--gpus-per-node=1",
                 "--partition=gpu", "--account=lab", "--time=600", "--mem=64GB",
                 "--cpus-per-task=8", "--qos=high", "--job-name=paper-train"):
        assert flag in resources
    assert plan[5].split(": ", 1)[1] == ("train/clipart/natural-only/s0 + "
                                         "eval/clipart/natural-only/s0")
    tasks = [x for x in plan if x.startswith("    task ")]
    assert len(tasks) == n_jobs and all(" + eval/" in x for x in tasks[:n_train])
    for n, kind in enumerate(analyses, 2):
        count = int(kinds[kind])
        what = "job array" if count > 1 else "job"
        assert f"  submission {n}: {what} paper-{kind}, {count} task(s)" in plan
    assert "--array=0-19%20" in printed and plan[-1] == "  in this process: report"
    assert not out.exists()


def test_slurm_executor_is_configured_as_planned(tmp_path, monkeypatch):
    """submitit's own AutoExecutor gets the planned parameters and writes them into the
    job array's sbatch file (sbatch is a stand-in: nothing is submitted)."""
    config = load_config("smoke", out=tmp_path / "out").replace("train", device="auto").replace(
        "run", executor="slurm", partition="gpu", account="lab", time=90, mem_gb=12,
        cpus_per_job=4, jobs=2, setup=["module load cuda"], extra={"qos": "high"})
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no cluster: one clear error
    with pytest.raises(ValueError, match="needs a SLURM cluster: submitit finds no srun"):
        executors.SubmititBackend(config, tmp_path / "out" / ".state", print)
    monkeypatch.setenv("PATH", path)
    fake_slurm(tmp_path, monkeypatch)
    params = executors.slurm_parameters(config, "train")
    assert params["gpus_per_node"] == 1 and params["slurm_array_parallelism"] == 2
    lines: list[str] = []
    backend = executors.SubmititBackend(config, tmp_path / "out" / ".state", lines.append)
    steps = [Step(id=f"train/{i}", params={}, run=lambda: None) for i in range(3)]
    assign_keys(steps)
    running = backend.submit([executors.Unit([s]) for s in steps])
    assert [r.job_id for r in running] == ["4242_0", "4242_1", "4242_2"]
    native = backend.executor._executor.parameters
    assert {k: native[k] for k in executors.slurm_native(params)} == executors.slurm_native(params)
    sbatch = (backend.folder / "4242" / "4242_submission.sh").read_text()  # the array's
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --gpus-per-node=1", "#SBATCH --partition=gpu",
                 "#SBATCH --account=lab", "#SBATCH --time=90", "#SBATCH --mem=12GB",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --qos=high", "#SBATCH --job-name=smoke-train",
                 "module load cuda"):
        assert line in sbatch
    assert lines == [f"submitted job array 4242 (smoke-train, 3 task(s)): train/0, train/1, "
                     f"train/2 (logs {backend.folder}/4242_*)"]
    assert str(running[1].log).endswith("4242_1_0_log.err")
    # on the CPU no GPU is asked for
    assert "gpus_per_node" not in executors.slurm_parameters(
        config.replace("train", device="cpu"), "train")


def test_local_dry_run_and_run_section_leave_step_keys_alone(tmp_path, capsys):
    config = load_config("smoke", out=tmp_path / "out")
    keys = {s.id: s.key for s in pipeline.plan(config)}
    slurm = config.replace("run", executor="slurm", partition="gpu", jobs=4, extra={"qos": "x"})
    assert {s.id: s.key for s in pipeline.plan(slurm)} == keys
    assert main(["reproduce", "smoke", "--dry-run", "--out", str(tmp_path / "out"),
                 "--executor", "local", "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "executor local: 8 job(s), at most 2 at a time" in printed
    assert "  job 1: train/quickdraw/natural-only/s0 + eval/quickdraw/natural-only/s0" in printed
    assert "  job 7: circuits/quickdraw/cg-high/s0" in printed
    assert "  job 8: circuits-mean-baseline/quickdraw/cg-high/s0" in printed
    assert printed.rstrip().endswith("in this process: report")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- [run] validation


@pytest.mark.parametrize("text, message", [
    ("[run]\nexecutor = 'kubernetes'\n",
     "[run] executor must be one of ['inline', 'local', 'slurm'], got 'kubernetes'"),
    ("[run]\nexecutorr = 'local'\n", "unknown key(s) ['executorr'] in [run]"),
    ("[run]\njobs = -1\n", "[run] jobs must be an integer >= 0, got -1"),
    ("[run]\njobs = 2\n", "[run] jobs = 2 needs executor = 'local' or 'slurm'"),
    ("[run]\nexecutor = 'slurm'\ntime = 0\n", "[run] time must be an integer >= 1, got 0"),
    ("[run]\nmem_gb = -4\n", "[run] mem_gb must be a finite number >= 0, got -4.0"),
    ("[run]\ngpus_per_job = 'one'\n", "[run] gpus_per_job must be an integer, got 'one'"),
    ("[run]\ncpus_per_job = -2\n", "[run] cpus_per_job must be an integer >= 0, got -2"),
    ("[run]\npartition = 'gpu a100'\n", "[run] partition must be a SLURM partition name "
                                        "without spaces, got 'gpu a100'"),
    ("[run]\nsetup = 'module load cuda'\n", "[run] setup must be a list"),
    ("[run]\nsetup = [1]\n", "[run] setup must list shell lines (strings), got 1"),
    ("[run]\nextra = { array = '0-3' }\n", "[run] extra: ['array'] are set by submitit itself"),
    ("[run]\nextra = { qos = ['a', 'b'] }\n", "[run] extra.qos must be a string, number or true"),
    ("[run]\nexecutor = 'slurm'\n[train]\ndevice = 'cuda:1'\n",
     "[train] device = 'cuda:1' names one GPU of this machine"),
])
def test_bad_run_section_is_one_error_naming_the_value(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises((ValueError, TypeError)) as error:
        load_config(path, out=tmp_path / "out")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_executor_options_on_the_command_line_fail_before_any_work(tmp_path, capsys):
    out = str(tmp_path / "out")
    for argv, message in (
        (["--executor", "mesos"], "[run] executor must be one of"),
        (["--jobs", "3"], "[run] jobs = 3 needs executor"),
        (["--executor", "slurm", "--slurm", "qos"], "--slurm expects KEY=VALUE"),
        (["--executor", "slurm", "--time", "-5"], "[run] time must be an integer >= 1, got -5"),
    ):
        assert main(["reproduce", "smoke", "--out", out, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- failure records


def test_failure_records_are_written_read_and_cleared(tmp_path):
    from domainlens.report import failed_steps

    state = tmp_path / "out" / ".state"
    steps = [Step(id="train/a", params={"x": 1}, run=lambda: None),
             Step(id="eval/a", params={}, run=lambda: (_ for _ in ()).throw(ValueError("bad\nx")),
                  depends=["train/a"])]
    with pytest.raises(ValueError):
        run_steps(steps, state, log=lambda m: None)  # inline: the error is recorded too
    assert [(r["id"], r["error"], r["job"]) for r in read_failures(state)] == [
        ("eval/a", "ValueError: bad", None)]
    write_failure(steps[0], state, "killed", log="/logs/1.err", job="17", executor="local")
    table = failed_steps(load_config("smoke", out=tmp_path / "out"))
    assert table.to_dict("records")[0] == {"step": "eval/a", "error": "ValueError: bad",
                                           "job": "", "log": ""}
    assert table["job"].tolist() == ["", "17"]
    write_record(steps[0], state, 1.0)  # done: its failure record goes
    assert [r["id"] for r in read_failures(state)] == ["eval/a"]
    steps[1].key = "another"  # inputs changed since it failed: the record no longer applies
    prune_failures(state, steps)
    assert read_failures(state) == [] and not failure_path(state, "eval/a").exists()
    assert json.loads((state / "train__a.json").read_text())["id"] == "train/a"


# ---------------------------------------------------------------- benchmark


def test_bench_executors_parses_its_arguments():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_executors.py"
    spec = importlib.util.spec_from_file_location("bench_executors", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.parse_args(["study", "--out-root", "/tmp/b"])
    assert args.config == "study" and args.variants == ["inline", "local:2"]
    args = bench.parse_args(["smoke", "--out-root", "/tmp/b", "--variants", "local:1", "local:2"])
    assert [bench.variant(v) for v in args.variants] == [("local", 1), ("local", 2)]
    assert bench.variant("inline") == ("inline", 1)
    assert bench.command("smoke", Path("/tmp/b/local-2"), ("local", 2))[-6:] == [
        "--out", "/tmp/b/local-2", "--executor", "local", "--jobs", "2"]
    with pytest.raises(SystemExit):
        bench.parse_args(["smoke", "--out-root", "/tmp/b", "--variants", "local:two"])
