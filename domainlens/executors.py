"""Hand the pipeline's steps to a scheduler: submitit subprocesses here, or SLURM jobs.

:func:`domainlens.pipeline.plan` gives the steps with their dependencies (``Step.depends``);
:func:`run_with_executor` runs them as ``[run] executor`` says, without changing what a step
computes (each job runs the same ``Step.run`` and writes the same record as ``inline``):

* Units: a training step and its evaluation are one job (the evaluation starts when its run
  finishes, on the same GPU); every analysis is a job of its own; ``data``, ``mixtures`` and
  the ``report`` (seconds, no GPU) run in this process, the *driver*.
* A unit is submitted as soon as every step it depends on is done. On SLURM the ready units of
  one kind go out together as one job array (``executor.batch()``): a training wave, then
  the analyses of the runs that finished. Locally at most ``jobs`` run at a time, the CPU
  cores divided between them (:data:`domainlens.pipeline.THREADS_ENV`) and, on a machine
  with GPUs, each job given its own (``CUDA_VISIBLE_DEVICES``).
* The step records in ``.state/`` stay the single truth: the driver polls them for finished
  steps and submitit's job states for jobs that ended. A job that ended without recording its
  steps failed: its error and log path are printed and kept as a failure record
  (:func:`domainlens.steps.write_failure`). Steps depending on a failed one are not
  submitted, every independent step still runs, the report is then drawn from what exists
  with the failures listed, and the run ends with :class:`StepsFailed`. Rerunning the same
  command submits only the unfinished steps (training resumes from its last checkpoint).
* ``Ctrl-C`` cancels the running jobs (SLURM: ``scancel``) before it stops the driver.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import layout
from .config import ExperimentConfig
from .steps import (
    Step,
    error_line,
    is_done,
    read_failures,
    run_step,
    state_path,
    write_failure,
)

#: Step kinds run in the driver process (seconds of work, no GPU), not submitted.
DRIVER_KINDS = ("data", "mixtures", "report")
#: ``[run] jobs = 0`` with the local executor on a machine without GPUs: steps at a time
#: (``benchmarks/bench_executors.py`` times a config with 1 and 2).
LOCAL_CPU_JOBS = 1
#: Seconds between two looks at the step records and job states.
POLL_SECONDS = {"local": 0.25, "slurm": 15.0}
#: Folder (under the output folder) of submitit's pickles and job logs, one subfolder per
#: ``reproduce`` session and per job.
JOBS_DIR = ".jobs"
#: sbatch lines left out of ``--dry-run`` (the log files and submitit's signal handling).
_QUIET_SBATCH = ("--output", "--error", "--open-mode", "--signal", "--wckey")


class StepsFailed(RuntimeError):
    """Some steps failed (their jobs raised, were killed or cancelled); ``failures`` are their
    records (:func:`domainlens.steps.read_failures`), ``status`` every step's outcome."""

    def __init__(self, failures: list[dict[str, Any]], status: dict[str, str]) -> None:
        self.failures, self.status = failures, status
        blocked = sum(v == "blocked" for v in status.values())
        lines = [f"{len(failures)} step(s) failed, {blocked} not run because they need them:"]
        for f in failures:
            where = f" (job {f['job']}, log {f['log']})" if f.get("job") else ""
            lines.append(f"  {f['id']}: {f['error']}{where}")
        lines.append("rerun the same command to submit only the unfinished steps")
        super().__init__("\n".join(lines))


def kind_of(step_id: str) -> str:
    """``train/sketch/cg-high/s0`` -> ``train``."""
    return step_id.split("/")[0]


@dataclass
class Unit:
    """Steps run one after another in one job (or in the driver)."""

    steps: list[Step]

    @property
    def kind(self) -> str:
        return kind_of(self.steps[0].id)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.steps]

    @property
    def depends(self) -> list[str]:
        """The steps outside the unit that it needs."""
        own = set(self.ids)
        return list(dict.fromkeys(d for s in self.steps for d in s.depends if d not in own))

    @property
    def in_driver(self) -> bool:
        return self.kind in DRIVER_KINDS

    @property
    def label(self) -> str:
        return " + ".join(self.ids)


def make_units(steps: Sequence[Step]) -> list[Unit]:
    """The units of ``steps`` (plan order): each training step with the evaluation that
    depends on it alone; every other step by itself."""
    units: list[Unit] = []
    trainings: dict[str, Unit] = {}
    for step in steps:
        kind = kind_of(step.id)
        if kind == "eval" and len(step.depends) == 1 and step.depends[0] in trainings:
            trainings[step.depends[0]].steps.append(step)
            continue
        unit = Unit([step])
        units.append(unit)
        if kind == "train":
            trainings[step.id] = unit
    return units


def run_job(steps: list[Step], state_dir: str, threads: int = 0,
            cwd: str | None = None) -> dict[str, Any]:
    """The body of one submitted job, in the job's own process: run ``steps`` in order, each
    recorded in ``state_dir`` (one already recorded is skipped), with at most ``threads``
    torch threads (0: no cap), from the driver's working directory ``cwd``. Returns the
    seconds per step and where they ran."""
    from .pipeline import THREADS_ENV, thread_count

    if cwd:
        os.chdir(cwd)
    if threads > 0:
        import torch

        os.environ[THREADS_ENV] = str(threads)
        torch.set_num_threads(threads)
    seconds = {}
    for step in steps:
        if is_done(step, Path(state_dir)):
            continue
        seconds[step.id] = run_step(step, Path(state_dir))
    return {"seconds": seconds, "threads": thread_count(0), "host": socket.gethostname(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


# ---------------------------------------------------------------- resources


def uses_gpu(config: ExperimentConfig) -> bool:
    """Whether the steps run on a GPU when there is one (``[train] device`` not cpu/mps)."""
    return config.train.device.startswith("cuda") or config.train.device == "auto"


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS)
        return os.cpu_count() or 1


def visible_gpus(config: ExperimentConfig) -> list[int]:
    """The GPUs local jobs are spread over: none for a CPU config; else this machine's, by the
    indices ``CUDA_VISIBLE_DEVICES`` names (so a restriction of the driver carries over)."""
    if not uses_gpu(config):
        return []
    import torch

    count = torch.cuda.device_count()
    named = [x.strip() for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
    if len(named) >= count and all(x.isdigit() for x in named):
        return [int(x) for x in named[:count]]
    return list(range(count))


def local_slots(config: ExperimentConfig, gpus: Sequence[int]) -> int:
    """Local jobs at a time: ``[run] jobs``, at most one per GPU on a GPU machine; 0: one per
    GPU, or :data:`LOCAL_CPU_JOBS` without GPUs."""
    jobs = config.run.jobs
    if gpus and config.train.device in ("auto", "cuda"):
        return min(jobs, len(gpus)) if jobs else len(gpus)
    return jobs or LOCAL_CPU_JOBS


def local_threads(slots: int) -> int:
    """Torch threads of each of ``slots`` local jobs: the cores divided between them."""
    return max(1, cpu_count() // slots)


def local_parameters(config: ExperimentConfig, gpu: int | None,
                     gpus: Sequence[int] = ()) -> dict[str, Any]:
    """submitit ``LocalExecutor`` parameters of one job: the time limit, its GPU (``gpu``;
    for a device naming one GPU, ``cuda:<n>``, every GPU in ``gpus``) and the setup lines.
    submitit sets the job's ``CUDA_VISIBLE_DEVICES`` from them (empty: no GPU)."""
    run = config.run
    if gpu is not None:
        devices: tuple[int, ...] = (gpu,)
    elif config.train.device.startswith("cuda:"):
        devices = tuple(gpus)
    else:
        devices = ()
    params: dict[str, Any] = {"timeout_min": run.time, "gpus_per_node": len(devices),
                              "visible_gpus": devices}
    if run.setup:
        params["setup"] = list(run.setup)
    return params


def slurm_parameters(config: ExperimentConfig, kind: str) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments of the jobs of one step ``kind``: one GPU
    per job (``gpus_per_job``) unless the config runs on the CPU, the ``[run]`` options, and
    ``extra`` passed through as sbatch options. SLURM sets each job's
    ``CUDA_VISIBLE_DEVICES`` to its GPU; submitit keeps the submitting environment."""
    run = config.run
    params: dict[str, Any] = {"name": f"{config.name}-{kind}", "timeout_min": run.time}
    if uses_gpu(config) and run.gpus_per_job:
        params["gpus_per_node"] = run.gpus_per_job
    if run.cpus_per_job:
        params["cpus_per_task"] = run.cpus_per_job
    if run.mem_gb:
        params["mem_gb"] = run.mem_gb
    for key in ("partition", "account"):
        if getattr(run, key):
            params[f"slurm_{key}"] = getattr(run, key)
    if run.jobs:
        params["slurm_array_parallelism"] = run.jobs
    if run.setup:
        params["slurm_setup"] = list(run.setup)
    if run.extra:
        params["slurm_additional_parameters"] = dict(run.extra)
    return params


def slurm_native(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (:func:`slurm_parameters`) as the ``SlurmExecutor`` parameters
    ``AutoExecutor`` turns them into (generic names renamed, memory as ``<n>GB``)."""
    from submitit.slurm.slurm import SlurmExecutor, _convert_mem

    renames = SlurmExecutor._equivalence_dict()
    native = {renames.get(k, k): (_convert_mem(v) if k == "mem_gb" else v)
              for k, v in params.items() if not k.startswith("slurm_")}
    native.update({k[len("slurm_"):]: v for k, v in params.items() if k.startswith("slurm_")})
    return native


def sbatch_options(params: dict[str, Any], n_tasks: int, folder: Path) -> list[str]:
    """The ``#SBATCH`` options submitit writes for ``n_tasks`` jobs of ``params`` (a job array
    when more than one), without the log-file and signal lines."""
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="true", folder=folder,
                               map_count=n_tasks if n_tasks > 1 else None,
                               **slurm_native(params))
    flags = [line.removeprefix("#SBATCH ") for line in text.splitlines()
             if line.startswith("#SBATCH ")]
    return [f for f in flags if f.split("=")[0] not in _QUIET_SBATCH]


# ---------------------------------------------------------------- backends


@dataclass
class Running:
    """A submitted unit: its job (submitit's, or a number in a dry run) and its GPU."""

    unit: Unit
    job_id: str
    log: str = ""
    job: Any = None
    gpu: int | None = None


class SubmititBackend:
    """Submits units through submitit: ``LocalExecutor`` subprocesses or ``AutoExecutor``
    SLURM jobs (one array per kind and wave)."""

    def __init__(self, config: ExperimentConfig, state_dir: Path,
                 log: Callable[[str], None]) -> None:
        import submitit

        self.config, self.state_dir, self.log = config, Path(state_dir).resolve(), log
        self.kind = config.run.executor
        session = time.strftime("%Y%m%d-%H%M%S")
        self.folder = (config.out_dir / JOBS_DIR / session).resolve()
        if self.kind == "local":
            self.executor = submitit.LocalExecutor(folder=self.folder / "%j")
            self.gpus = visible_gpus(config)
            self.slots = local_slots(config, self.gpus)
            self.threads = local_threads(self.slots)
            pin = bool(self.gpus) and config.train.device in ("auto", "cuda")
            self.free_gpus: list[int] | None = list(self.gpus) if pin else None
        else:
            if submitit.SlurmExecutor.affinity() <= 0:
                raise ValueError("[run] executor = 'slurm' needs a SLURM cluster: submitit finds "
                                 "no srun on PATH here; --dry-run shows the jobs, --executor "
                                 "local runs them on this machine")
            self.executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
            self.gpus, self.slots, self.free_gpus = [], 0, None
            self.threads = config.run.cpus_per_job

    def describe(self) -> str:
        if self.kind == "local":
            gpu = (f", one GPU each of {self.gpus}" if self.free_gpus is not None
                   else ", no GPU" if not self.gpus else f", GPUs {self.gpus}")
            return (f"local executor: at most {self.slots} job(s) at a time, {self.threads} "
                    f"torch thread(s) each{gpu}; job logs in {self.folder}")
        return f"slurm executor: job logs in {self.folder}"

    def capacity(self, n_running: int) -> int | None:
        return None if self.kind == "slurm" else self.slots - n_running

    def _args(self, unit: Unit) -> tuple:
        return (unit.steps, str(self.state_dir), self.threads, os.getcwd())

    def submit(self, units: list[Unit]) -> list[Running]:
        if self.kind == "local":
            out = []
            for unit in units:
                gpu = self.free_gpus.pop(0) if self.free_gpus else None
                self.executor.update_parameters(**local_parameters(self.config, gpu, self.gpus))
                job = self.executor.submit(run_job, *self._args(unit))
                out.append(Running(unit, job.job_id, str(job.paths.stderr), job, gpu))
                self.log(f"job {job.job_id}: {unit.label}"
                         + (f" on GPU {gpu}" if gpu is not None else "")
                         + f" (log {job.paths.stderr})")
            return out
        out = []
        for kind, group in _by_kind(units):
            self.executor.update_parameters(**slurm_parameters(self.config, kind))
            with self.executor.batch():
                jobs = [self.executor.submit(run_job, *self._args(u)) for u in group]
            out += [Running(u, j.job_id, str(j.paths.stderr), j) for u, j in zip(group, jobs,
                                                                                 strict=True)]
            first = jobs[0].job_id.split("_")[0]
            self.log(f"submitted {'job array' if len(jobs) > 1 else 'job'} {first} "
                     f"({self.config.name}-{kind}, {len(jobs)} task(s)): "
                     f"{', '.join(u.steps[0].id for u in group)} (logs {self.folder}/{first}_*)")
        return out

    def done(self, running: Running) -> bool:
        return bool(running.job.done())

    def error(self, running: Running) -> str:
        """Why a job ended without recording its steps: the last line of its traceback, or
        (no result: killed, cancelled, out of time or memory) its state and last log line."""
        job = running.job
        if self.kind == "local" and not job.paths.result_pickle.exists():
            exception = None
        else:
            exception = job.exception()
        trace = _trace_line(str(exception)) if exception is not None else ""
        if exception is not None and "has not produced any output" not in str(exception):
            return trace or error_line(exception)
        return (f"the job ended without a result (state {job.state}: killed, cancelled, out of "
                f"time or memory?); last log line: {_last_line(job.paths.stderr)!r}")

    def release(self, running: Running) -> None:
        if running.gpu is not None and self.free_gpus is not None:
            self.free_gpus.append(running.gpu)
            self.free_gpus.sort()

    def cancel(self, running: Iterable[Running]) -> None:
        for r in running:
            r.job.cancel(check=False)

    def wait(self) -> None:
        time.sleep(POLL_SECONDS[self.kind])


@dataclass
class PlannedSubmission:
    """One submission of a dry run: a job (local) or a job array (slurm) of ``units``."""

    kind: str
    units: list[Unit]
    params: dict[str, Any]


class PlanBackend:
    """A dry run's backend: records what would be submitted; every job ends (successfully) by
    the next look, so the submissions come out wave by wave."""

    def __init__(self, config: ExperimentConfig, state_dir: Path) -> None:
        self.config, self.state_dir = config, state_dir
        self.kind = config.run.executor
        self.gpus = visible_gpus(config) if self.kind == "local" else []
        self.slots = local_slots(config, self.gpus) if self.kind == "local" else 0
        self.events: list[tuple[str, Any]] = []   # ("here", unit) | ("submit", submission)
        self.finished: set[str] = set()

    def is_finished(self, step: Step) -> bool:
        return step.id in self.finished or is_done(step, self.state_dir)

    def run_here(self, unit: Unit) -> None:
        self.events.append(("here", unit))
        self.finished.update(unit.ids)

    def capacity(self, n_running: int) -> int | None:
        return None if self.kind == "slurm" else self.slots - n_running

    def submit(self, units: list[Unit]) -> list[Running]:
        if self.kind == "slurm":
            for kind, group in _by_kind(units):
                self.events.append(("submit", PlannedSubmission(
                    kind, group, slurm_parameters(self.config, kind))))
        else:
            for unit in units:
                self.events.append(("submit", PlannedSubmission(
                    unit.kind, [unit], local_parameters(self.config, None))))
        return [Running(u, "") for u in units]

    def done(self, running: Running) -> bool:
        self.finished.update(running.unit.ids)
        return True

    def error(self, running: Running) -> str:  # pragma: no cover (jobs never fail here)
        return ""

    def release(self, running: Running) -> None:
        pass

    def cancel(self, running: Iterable[Running]) -> None:
        pass

    def wait(self) -> None:
        pass


def _by_kind(units: list[Unit]) -> list[tuple[str, list[Unit]]]:
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.kind, []).append(unit)
    return list(groups.items())


def _trace_line(text: str) -> str:
    """The last line of the traceback inside a submitit ``FailedJobError`` message."""
    parts = text.split("-" * 22)
    trace = parts[1] if len(parts) >= 3 else text
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in Path(path).read_text(errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


# ---------------------------------------------------------------- the driver


@dataclass
class _Driver:
    """Submits units as their dependencies finish and follows them to the end."""

    steps: list[Step]
    state_dir: Path
    backend: Any
    log: Callable[[str], None]
    is_finished: Callable[[Step], bool]
    run_here: Callable[[Unit], None]
    status: dict[str, str] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {s.id: i for i, s in enumerate(self.steps, 1)}

    def tag(self, step_id: str) -> str:
        return f"[{self.index[step_id]}/{len(self.steps)}] {step_id}"

    def settled(self, step_id: str) -> bool:
        return self.status.get(step_id) in ("done", "skipped")

    def broken(self, step_id: str) -> bool:
        return self.status.get(step_id) in ("failed", "blocked")

    def fail(self, step: Step, error: str, running: Running | None = None) -> None:
        self.status[step.id] = "failed"
        job = running.job_id if running is not None else None
        log = running.log if running is not None else None
        self.failures.append(write_failure(
            step, self.state_dir, error, log=log, job=job,
            executor=self.backend.kind if running is not None else "driver"))
        where = f" in job {job}" if job else ""
        self.log(f"{self.tag(step.id)}: FAILED{where}: {error}" + (f"; log: {log}" if log else ""))

    def block(self, unit: Unit, why: str) -> None:
        for step in unit.steps:
            if step.id not in self.status:
                self.status[step.id] = "blocked"
                self.log(f"{self.tag(step.id)}: not run ({why})")

    def collect(self, running: list[Running]) -> bool:
        """Note the steps the running jobs finished and the jobs that ended."""
        progressed = False
        for r in list(running):
            ended = self.backend.done(r)  # before the records: a job records, then ends
            for step in r.unit.steps:
                if step.id not in self.status and self.is_finished(step):
                    self.status[step.id] = "done"
                    progressed = True
                    self.log(f"{self.tag(step.id)}: done{_seconds(self.state_dir, step)}"
                             + (f" (job {r.job_id})" if r.job_id else ""))
            if ended:
                left = [s for s in r.unit.steps if s.id not in self.status]
                if left:
                    self.fail(left[0], self.backend.error(r), r)
                    self.block(Unit(left[1:]), f"its job ended after {left[0]} failed")
                running.remove(r)
                self.backend.release(r)
                progressed = True
        return progressed

    def run(self) -> dict[str, str]:
        for step in self.steps:
            if self.is_finished(step):
                self.status[step.id] = "skipped"
                self.log(f"{self.tag(step.id)}: up to date, skipped")
        pending = make_units([s for s in self.steps if s.id not in self.status])
        running: list[Running] = []
        try:
            while pending or running:
                progressed = self.collect(running)
                for unit in list(pending):
                    failed = [d for d in unit.depends if self.broken(d)]
                    if failed:
                        pending.remove(unit)
                        self.block(unit, f"it needs {failed[0]}, which did not finish")
                        progressed = True
                ready = [u for u in pending if all(self.settled(d) for d in u.depends)]
                here = [u for u in ready if u.in_driver]
                if here:  # in this process, one at a time, then look again
                    pending.remove(here[0])
                    self.run_here(here[0])
                    for step in here[0].steps:
                        if step.id not in self.status and self.is_finished(step):
                            self.status[step.id] = "done"
                    continue
                jobs = [u for u in ready if not u.in_driver]
                free = self.backend.capacity(len(running))
                take = jobs if free is None else jobs[:max(free, 0)]
                if take:
                    for unit in take:
                        pending.remove(unit)
                    running += self.backend.submit(take)
                    progressed = True
                if not progressed:
                    if not running:  # pragma: no cover (a dependency cycle: plan forbids it)
                        raise RuntimeError(f"steps wait on nothing: {[u.label for u in pending]}")
                    self.backend.wait()
        except KeyboardInterrupt:
            if running:
                self.log(f"cancelling {len(running)} running job(s): "
                         f"{', '.join(r.job_id for r in running)}")
                self.backend.cancel(running)
            raise
        return {s.id: self.status[s.id] for s in self.steps}


def _seconds(state_dir: Path, step: Step) -> str:
    import json

    try:
        return f" in {json.loads(state_path(state_dir, step.id).read_text())['seconds']:.1f} s"
    except (OSError, ValueError, KeyError):
        return ""


def _run_in_driver(driver: _Driver, unit: Unit) -> None:
    for step in unit.steps:
        driver.log(f"{driver.tag(step.id)} ...")
        try:
            seconds = run_step(step, driver.state_dir)
        except Exception as error:  # the driver goes on with what does not need it
            driver.fail(step, error_line(error))
            driver.block(Unit([s for s in unit.steps if s.id not in driver.status]),
                         f"after {step.id} failed")
            return
        driver.status[step.id] = "done"
        driver.log(f"{driver.tag(step.id)}: done in {seconds:.1f} s")


def run_with_executor(config: ExperimentConfig, steps: list[Step],
                      log: Callable[[str], None] = print) -> dict[str, str]:
    """Run the planned ``steps`` through the ``[run] executor`` (``local`` or ``slurm``).

    Returns ``{id: "done" | "skipped"}``; raises :class:`StepsFailed` when some step failed,
    after every step that does not need it has run and a report of what exists (with the
    failures) has been written.
    """
    state_dir = config.out_dir / layout.STATE_DIR
    backend = SubmititBackend(config, state_dir, log)
    log(f"experiment {config.name!r}: {len(steps)} steps, output in {config.out_dir}; "
        + backend.describe())
    driver = _Driver(steps, state_dir, backend, log, lambda s: is_done(s, state_dir),
                     lambda unit: _run_in_driver(driver, unit))
    status = driver.run()
    if driver.failures:
        report = next((s for s in steps if s.id == "report"), None)
        evaluated = any(kind_of(k) == "eval" and v in ("done", "skipped")
                        for k, v in status.items())
        if report is not None and status.get("report") == "blocked" and not evaluated:
            log("no report: no evaluation has finished")
        elif report is not None and status.get("report") == "blocked":
            try:  # what exists, with the failures listed; not recorded: a rerun redoes it
                report.run()
                log(f"report of the finished steps (the failures listed): "
                    f"{config.out_dir / layout.REPORT_MD}")
            except Exception as error:
                log(f"no report of the finished steps: {error_line(error)}")
        raise StepsFailed(read_failures(state_dir) or driver.failures, status)
    return status


# ---------------------------------------------------------------- dry run


def plan_submissions(config: ExperimentConfig, steps: list[Step]) -> PlanBackend:
    """What :func:`run_with_executor` would submit for ``steps`` if every job of a wave ended
    together (the backend's ``events``, in order); submits nothing."""
    state_dir = config.out_dir / layout.STATE_DIR
    backend = PlanBackend(config, state_dir)
    driver = _Driver(steps, state_dir, backend, lambda m: None, backend.is_finished,
                     backend.run_here)
    driver.run()
    return backend


def format_submissions(config: ExperimentConfig, steps: list[Step]) -> str:
    """The dry run of an executor: job by job (SLURM: job array by job array, each with its
    ``#SBATCH`` resources and tasks), in the order they would be submitted."""
    backend = plan_submissions(config, steps)
    submissions = [e for kind, e in backend.events if kind == "submit"]
    folder = config.out_dir / JOBS_DIR / "<session>" / "%j"
    if backend.kind == "slurm":
        head = (f"executor slurm: {len(submissions)} submission(s) of "
                f"{sum(len(s.units) for s in submissions)} job(s), in waves as their inputs "
                "finish (each wave of one kind is one job array)")
    else:
        threads = local_threads(backend.slots)
        gpu = f", one GPU each of {backend.gpus}" if backend.gpus else ", no GPU"
        head = (f"executor local: {len(submissions)} job(s), at most {backend.slots} at a time, "
                f"{threads} torch thread(s) each{gpu}, time limit {config.run.time} min")
    lines = [head]
    n = 0
    for kind, event in backend.events:
        if kind == "here":
            lines.append(f"  in this process: {event.label}")
            continue
        n += 1
        if backend.kind == "local":
            lines.append(f"  job {n}: {event.units[0].label}")
            continue
        tasks = len(event.units)
        what = "job array" if tasks > 1 else "job"
        lines.append(f"  submission {n}: {what} {event.params['name']}, {tasks} task(s)"
                     + (", each a run's training then its evaluation"
                        if event.kind == "train" else ""))
        lines.append("    " + " ".join(sbatch_options(event.params, tasks, folder)))
        width = len(str(tasks - 1))
        for i, unit in enumerate(event.units):
            lines.append(f"    task {i:>{width}}: {unit.label}")
    return "\n".join(lines)
