"""``passt-study study`` (``make study``): every study at the embedded scale, then the figures.

Runs ``studies/patchout.yaml`` and ``studies/coarse_to_fine.yaml`` with a
process pool (one single-threaded run per core: on a small CPU two such runs
beat one two-threaded run, and kernel start-up overlaps with training), then
``studies/speed.yaml`` alone (timings need the machine to themselves), then
executes ``notebooks/90_figures.ipynb``, which writes ``results/figures``,
``results/tables`` and ``results/REPORT.md``. Finished runs are skipped, so
an interrupted ``make study`` resumes. The wall time goes to
``results/study_time.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from passt_lib.atomic import atomic_write_json
from passt_lib.data import embedded
from passt_lib.provenance import REPO_ROOT, git_state
from passt_lib.study.kernels import default_kernel, kernel_env, one_kernel
from passt_lib.study.runner import load_study, run_study

TRAINING_STUDIES = ("patchout", "coarse_to_fine")
TIMING_STUDIES = ("speed",)


def run_figures_notebook(scale: str, runs: Path, results: Path, kernel_name: str | None) -> Path:
    """Execute 90_figures into ``runs/figures/`` (always: new runs mean new figures)."""
    import papermill  # not at the top: a slow import the other subcommands do without

    out = runs / "figures"
    out.mkdir(parents=True, exist_ok=True)
    kernel_name = kernel_name or default_kernel()
    with kernel_env(None), one_kernel(kernel_name) as km:
        papermill.execute_notebook(
            str(REPO_ROOT / "notebooks" / "90_figures.ipynb"), str(out / "90_figures.ipynb"),
            parameters={"scale": scale, "runs": str(runs), "results": str(results),
                        "out_dir": str(out)},
            kernel_name=kernel_name, cwd=str(REPO_ROOT), progress_bar=False, km=km)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="passt-study study", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="embedded")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel training runs (default: the number of cores, at most 4)")
    p.add_argument("--studies", default=str(REPO_ROOT / "studies"), help="folder of study YAMLs")
    p.add_argument("--runs", default=str(REPO_ROOT / "results" / "runs"))
    p.add_argument("--results", default=str(REPO_ROOT / "results"))
    p.add_argument("--kernel", default=None)
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--only", nargs="+", default=None, metavar="STUDY",
                   help="run only these studies (names), then the figures")
    args = p.parse_args(argv)
    workers = args.workers or max(1, min(4, os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    t0 = time.perf_counter()
    made_by = git_state()  # before the figures rewrite tracked files
    times, failures = {}, {}
    if args.scale != "paper":
        # Build (or find) the dataset once, before parallel runs would race to build it.
        print(f"== data: embedded dataset at scale {args.scale}", flush=True)
        embedded.ensure(args.scale)
        times["data"] = round(time.perf_counter() - t0, 1)
    for name in (*TRAINING_STUDIES, *TIMING_STUDIES):
        if args.only and name not in args.only:
            continue
        parallel = name in TRAINING_STUDIES
        study = load_study(Path(args.studies) / f"{name}.yaml", scale=args.scale,
                           results=args.runs, kernel_name=args.kernel,
                           threads=threads if parallel and workers > 1 else None)
        t = time.perf_counter()
        print(f"== {name}: {len(study.runs)} runs", flush=True)
        res = run_study(study, workers=workers if parallel else 1, retry_failed=args.retry_failed)
        times[name] = round(time.perf_counter() - t, 1)
        failures.update({f"{name}/{h}": e for h, e in res.failed.items()})
        print(f"   {len(res.done)} run, {len(res.skipped)} already done, {len(res.failed)} failed, "
              f"{times[name]} s", flush=True)
    t = time.perf_counter()
    try:
        run_figures_notebook(args.scale, Path(args.runs), Path(args.results), args.kernel)
    except Exception as exc:  # noqa: BLE001 - e.g. no finished run: report it with the rest
        failures["figures"] = exc
    times["figures"] = round(time.perf_counter() - t, 1)
    total = round(time.perf_counter() - t0, 1)
    atomic_write_json(Path(args.results) / "study_time.json", {
        "scale": args.scale, "workers": workers, "seconds": times, "total_seconds": total,
        "cpu_count": os.cpu_count(), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **made_by})
    print(f"study finished in {total:.0f} s ({total / 60:.1f} min); figures in "
          f"{args.results}/figures, report in {args.results}/REPORT.md")
    if failures:
        print("failed runs:", file=sys.stderr)
        for k, e in failures.items():
            print(f"  {k}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
