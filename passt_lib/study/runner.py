"""``passt-study run STUDY.yaml``: one papermill notebook per parameter set, and nothing lost.

A study YAML names a notebook and a parameter grid::

    name: patchout                      # default: the file name
    notebook: notebooks/10_patchout.ipynb
    fixed: {preset: passt-s}            # the same for every run
    grid:                               # a dict (product of its lists) or a list of dicts
      - {patchout: [none], seed: [0, 1, 2]}
      - {patchout: [time, unstructured], amount: [0.3, 0.6], seed: [0, 1, 2]}
    slurm: {timeout_min: 60, gpus_per_node: 1}   # optional, for --executor slurm

Every run executes into ``results/runs/<study>/<config-hash>/`` (hash of the
canonical JSON of notebook name + full parameter set). Guarantees:

- every parameter name and type is checked against the notebook's
  ``parameters`` cell before anything starts;
- a run is done when its ``metrics.json`` (written last, atomically, by the
  notebook) carries the matching hash: done runs are skipped, so a rerun of a
  finished study does nothing, and a killed study resumes where it stopped;
- a failing run writes ``failed.json`` (error and traceback) next to its
  executed notebook; the others go on; the command exits 1 listing the
  failures; ``--retry-failed`` runs them again;
- a kernel that does not start is retried;
- with ``--workers`` > 1 each worker process keeps one kernel for all its runs (a warm
  kernel: the second run of a worker starts in about 1.8 s instead of 8), reached over IPC
  sockets, not TCP; a run that fails gets a fresh kernel for the next one. Runs share
  nothing but imported modules: every notebook sets all the state it uses from its
  parameters. (The calling process never keeps a kernel: its ZeroMQ state would be
  inherited by processes it forks later.)

``--executor slurm`` submits the same runs with ``submitit`` (the optional
``slurm`` extra). A notebook that needs several GPUs must not train in its
kernel (DDP cannot start there): it calls ``torchrun -m passt_lib.train``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passt_lib.atomic import atomic_write_json, read_json
from passt_lib.configs import read_structured_file, strict_keys
from passt_lib.errors import run_main
from passt_lib.provenance import REPO_ROOT
from passt_lib.rundir import FAILED_FILE, METRICS_FILE, config_hash, is_done, notebook_stem
from passt_lib.study.kernels import (
    default_kernel,
    kernel_env,
    one_kernel,
    shutdown_kernels,
    warm_kernel,
)
from passt_lib.study.notebook_params import notebook_parameters, resolve_params

RUNS_ROOT = REPO_ROOT / "results" / "runs"
STUDY_KEYS = {"name", "notebook", "fixed", "grid", "slurm", "description"}
KERNEL_START_ERRORS = ("Kernel didn't respond", "Kernel died before replying", "kernel_info")
KERNEL_START_TRIES = 3


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to execute one run, picklable for process pools and submitit."""

    study: str
    notebook: str  # absolute path
    params: dict[str, Any]  # resolved, without out_dir
    hash: str
    run_dir: str
    kernel_name: str
    cwd: str
    execution_timeout: int | None = None
    threads: int | None = None  # OMP/MKL threads for the kernel; None keeps the environment

    @property
    def output_notebook(self) -> Path:
        return Path(self.run_dir) / f"{notebook_stem(self.notebook)}.ipynb"


@dataclass
class Study:
    name: str
    notebook: Path
    runs: list[RunSpec]
    slurm: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- planning


def expand_grid(grid: dict | list | None) -> list[dict[str, Any]]:
    """Parameter sets of a grid: a dict is the product of its lists; a list of dicts, their union."""
    if grid is None:
        return [{}]
    if isinstance(grid, dict):
        grid = [grid]
    if not isinstance(grid, list):
        raise ValueError(f"study 'grid' must be a dict or a list of dicts, got {type(grid).__name__}")
    out: list[dict[str, Any]] = []
    for sub in grid:
        if not isinstance(sub, dict):
            raise ValueError(f"each grid entry must be a dict of lists, got {sub!r}")
        names = list(sub)
        values = []
        for n in names:
            v = sub[n]
            if not isinstance(v, list) or not v:
                raise ValueError(f"grid entry {n!r} must be a non-empty list of values, got {v!r}")
            values.append(v)
        out.extend(dict(zip(names, combo)) for combo in itertools.product(*values))
    return out


def _resolve_notebook(notebook: str, study_path: Path) -> Path:
    p = Path(notebook)
    candidates = [p] if p.is_absolute() else [study_path.parent / p, study_path.parent.parent / p,
                                                Path.cwd() / p, REPO_ROOT / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise FileNotFoundError(f"study {study_path} names notebook {notebook!r}, which does not exist "
                            f"(looked in {', '.join(str(c.parent) for c in candidates)})")


def load_study(
    path: str | Path,
    *,
    scale: str | None = None,
    results: str | Path | None = None,
    kernel_name: str | None = None,
    execution_timeout: int | None = None,
    threads: int | None = None,
) -> Study:
    """Read a study YAML and plan its runs; every parameter is validated here."""
    path = Path(path)
    spec = read_structured_file(path)
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a study is a YAML mapping, got {type(spec).__name__}")
    strict_keys(sorted(STUDY_KEYS), spec, f"{path}: study")
    if "notebook" not in spec:
        raise ValueError(f"{path}: a study must name its 'notebook'")
    name = spec.get("name") or path.stem
    notebook = _resolve_notebook(spec["notebook"], path)
    declared = notebook_parameters(notebook)
    if "out_dir" not in declared:
        raise ValueError(f"notebook {notebook} must declare an `out_dir: str` parameter")
    fixed = dict(spec.get("fixed") or {})
    if scale is not None:
        fixed["scale"] = scale
    root = Path(results) if results is not None else RUNS_ROOT
    kernel = kernel_name or default_kernel()
    runs, seen = [], set()
    for i, point in enumerate(expand_grid(spec.get("grid"))):
        given = {**fixed, **point}
        if "out_dir" in given:
            raise ValueError(f"{path}: 'out_dir' is set by the runner, not by the study")
        try:
            params = resolve_params(declared, given, ignore=("out_dir",))
        except ValueError as e:
            raise ValueError(f"{path}: run {i} {given}: {e}") from None
        h = config_hash(notebook, params)
        if h in seen:
            continue  # the same parameter set listed twice runs once
        seen.add(h)
        runs.append(RunSpec(study=name, notebook=str(notebook), params=params, hash=h,
                            run_dir=str((root / name / h).resolve()), kernel_name=kernel,
                            cwd=str(REPO_ROOT), execution_timeout=execution_timeout,
                            threads=threads))
    return Study(name, notebook, runs, dict(spec.get("slurm") or {}))


# --------------------------------------------------------------------------- executing one run


def _execute_notebook(spec: RunSpec, km=None) -> None:
    if km is None:
        with one_kernel(spec.kernel_name) as fresh:
            return _execute_notebook(spec, fresh)
    import papermill

    papermill.execute_notebook(
        spec.notebook,
        str(spec.output_notebook),
        parameters={**spec.params, "out_dir": spec.run_dir},
        kernel_name=spec.kernel_name,
        cwd=spec.cwd,
        progress_bar=False,
        log_output=False,
        request_save_on_cell_execute=True,
        execution_timeout=spec.execution_timeout,
        km=km,
    )


def _is_kernel_start_error(exc: BaseException) -> bool:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return False  # a cell ran and raised: the kernel started
    return any(s in str(exc) for s in KERNEL_START_ERRORS)


def _short(exc: BaseException) -> str:
    """One line naming the error: the notebook's exception for a failing cell."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"[:500]
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:500]


def execute_run(spec: RunSpec, warm: bool = False) -> dict[str, Any]:
    """Execute one run (in this process or a worker); never raises for a failing notebook.

    ``warm``: run it in this process's kept kernel (:func:`kernels.warm_kernel`).
    Returns {"hash", "status": "done" | "failed", "seconds", "error"}.
    """
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "params.json",
                      {"notebook": notebook_stem(spec.notebook), "config_hash": spec.hash,
                       "params": spec.params})
    t0 = time.perf_counter()
    error = None
    with kernel_env(spec.threads):
        for attempt in range(1, KERNEL_START_TRIES + 1):
            try:
                km = warm_kernel(spec.kernel_name, spec.threads, spec.cwd) if warm else None
                _execute_notebook(spec, km)
                error = None
                break
            except Exception as e:  # noqa: BLE001 - every failure is recorded, none escapes
                error = e
                if warm:  # a failed run may leave the kernel in any state: start afresh
                    shutdown_kernels([(spec.kernel_name, spec.threads, spec.cwd)])
                if not (_is_kernel_start_error(e) and attempt < KERNEL_START_TRIES):
                    break
                time.sleep(2 * attempt)
    seconds = round(time.perf_counter() - t0, 3)
    if error is None and not is_done(run_dir, spec.hash):
        error = RuntimeError(f"the notebook finished without writing {METRICS_FILE} with hash "
                             f"{spec.hash} (does it call run.finish(...)?)")
    if error is not None:
        atomic_write_json(run_dir / FAILED_FILE, {
            "config_hash": spec.hash,
            "error": f"{type(error).__name__}: {error}"[:4000],
            "traceback": "".join(traceback.format_exception(error))[-8000:],
            "executed_notebook": spec.output_notebook.name,
            "seconds": seconds,
        })
        return {"hash": spec.hash, "status": "failed", "seconds": seconds, "error": _short(error)}
    with contextlib.suppress(FileNotFoundError):
        os.unlink(run_dir / FAILED_FILE)
    return {"hash": spec.hash, "status": "done", "seconds": seconds, "error": None}


# --------------------------------------------------------------------------- executing a study


@dataclass
class StudyResult:
    study: str
    skipped: list[str] = field(default_factory=list)  # already done
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # hash -> error
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def plan(study: Study, retry_failed: bool = False) -> tuple[list[RunSpec], list[str], dict[str, str]]:
    """(runs to execute, hashes already done, hashes failed before and not retried)."""
    todo, done, failed = [], [], {}
    for spec in study.runs:
        if is_done(spec.run_dir, spec.hash):
            done.append(spec.hash)
            continue
        prev = read_json(Path(spec.run_dir) / FAILED_FILE)
        if prev is not None and prev.get("config_hash") == spec.hash and not retry_failed:
            failed[spec.hash] = f"failed earlier (use --retry-failed): {prev.get('error', '')}"[:500]
            continue
        todo.append(spec)
    return todo, done, failed


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="run", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)


def run_study(
    study: Study,
    *,
    workers: int = 1,
    executor: str = "local",
    retry_failed: bool = False,
    progress: bool = True,
    submitit_cluster: str | None = None,
    submitit_folder: str | Path | None = None,
) -> StudyResult:
    """Execute every run of ``study`` that is not done; see the module docstring."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if executor not in ("local", "slurm"):
        raise ValueError(f"unknown executor {executor!r}; expected 'local' or 'slurm'")
    todo, already, failed_before = plan(study, retry_failed)
    result = StudyResult(study.name, skipped=already, failed=dict(failed_before))
    bar = _progress(len(study.runs), len(already) + len(failed_before), progress)

    def record(r: dict[str, Any]) -> None:
        result.seconds[r["hash"]] = r["seconds"]
        if r["status"] == "done":
            result.done.append(r["hash"])
        else:
            result.failed[r["hash"]] = r["error"]
        n_done = len(result.done) + len(already)
        bar.set_postfix(done=n_done, failed=len(result.failed),
                        remaining=bar.total - n_done - len(result.failed), refresh=False)
        bar.update(1)

    bar.set_postfix(done=len(already), failed=len(failed_before), remaining=len(todo))
    try:
        if executor == "slurm":
            _run_submitit(study, todo, record, cluster=submitit_cluster, folder=submitit_folder)
        elif workers == 1:
            for spec in todo:
                record(execute_run(spec))
        else:
            # spawn: a forked worker would inherit this process's ZeroMQ state (from kernels
            # it ran) and spin on it
            import multiprocessing

            with ProcessPoolExecutor(max_workers=workers,
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                pending = {pool.submit(execute_run, s, True): s for s in todo}
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        spec = pending.pop(fut)
                        try:
                            record(fut.result())
                        except Exception as e:  # a worker process died
                            record({"hash": spec.hash, "status": "failed", "seconds": 0.0,
                                    "error": f"worker died: {type(e).__name__}: {e}"})
    finally:
        bar.close()
    return result


def _run_submitit(study: Study, todo: list[RunSpec], record, *, cluster: str | None,
                  folder: str | Path | None) -> None:
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError("--executor slurm needs submitit: pip install -e '.[slurm]'") from e
    if not todo:
        return
    folder = Path(folder) if folder else Path(todo[0].run_dir).parent / ".submitit"
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = {"timeout_min": 60, "name": f"passt-{study.name}", **study.slurm}
    ex.update_parameters(**params)
    jobs = list(zip(todo, ex.map_array(execute_run, todo)))  # one SLURM job array
    for spec, job in jobs:
        try:
            record(job.result())
        except Exception as e:  # the job itself failed (node lost, timeout, ...)
            record({"hash": spec.hash, "status": "failed", "seconds": 0.0,
                    "error": f"submitit job {job.job_id} failed: {type(e).__name__}: {e}"[:500]})


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="passt-study run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help="study YAML (see studies/)")
    p.add_argument("--workers", type=int, default=1, help="runs executed at once (process pool)")
    p.add_argument("--executor", choices=("local", "slurm"), default="local")
    p.add_argument("--submitit-cluster", default=None,
                   help="submitit cluster for --executor slurm: slurm (default), local or debug")
    p.add_argument("--retry-failed", action="store_true", help="run the failed runs again")
    p.add_argument("--scale", default=None, help="override the `scale` parameter of every run")
    p.add_argument("--results", default=None, help=f"runs root (default {RUNS_ROOT})")
    p.add_argument("--kernel", default=None, help="Jupyter kernel (default passt-study)")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP threads per run (default: cores / workers when workers > 1)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """``passt-study run``: a bad study file is one line on stderr and exit status 2."""
    return run_main("passt-study run", _main, argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    threads = args.threads
    if threads is None and args.workers > 1:
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    study = load_study(args.study, scale=args.scale, results=args.results,
                       kernel_name=args.kernel, execution_timeout=args.timeout, threads=threads)
    if args.dry_run:
        todo, done, failed = plan(study, args.retry_failed)
        for spec in study.runs:
            state = ("done" if spec.hash in done else "failed" if spec.hash in failed else "todo")
            print(f"{spec.hash}  {state:6}  {spec.params}")
        return 0
    t0 = time.perf_counter()
    res = run_study(study, workers=args.workers, executor=args.executor,
                    retry_failed=args.retry_failed, progress=not args.no_progress,
                    submitit_cluster=args.submitit_cluster)
    print(f"study {study.name}: {len(res.done)} run, {len(res.skipped)} already done, "
          f"{len(res.failed)} failed, {time.perf_counter() - t0:.1f} s "
          f"({Path(study.runs[0].run_dir).parent if study.runs else ''})")
    if res.failed:
        print("failed runs (see failed.json and the executed notebook in each run directory):",
              file=sys.stderr)
        for h, err in res.failed.items():
            print(f"  {h}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
