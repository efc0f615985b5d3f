"""``make stale``: which committed result CSVs are older than the code they measure.

A CSV is stale when a file its benchmark or study exercises changed after the commit it
records. Benchmark CSVs record it on every row (a ``commit`` column); the study's tables in
their first line (``# source: N runs; commits 26f7d23739, ...``, the commits of the runs
behind them). :data:`EXERCISES` maps each CSV to the files that decide its numbers, and git
says which of those changed since (``git diff --numstat <recorded> HEAD -- <files>``).

A report, not a test: any later commit that touches the model would fail a test. It prints
one line per CSV and exits 0; 2 when the repository is not a git checkout.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from passt_lib.provenance import REPO_ROOT, run_git

# ---------------------------------------------------------------------------- what each CSV measures
# Groups of files; a directory (ending in "/") stands for everything under it.
TRANSFORMER = ("passt_lib/model.py", "passt_lib/patchout.py", "passt_lib/grid.py",
               "passt_lib/frontend.py", "passt_lib/models.py", "passt_lib/scales.py")
CNNS = ("passt_lib/cnn.py", "passt_lib/mobilenet.py")
TIMING = ("passt_lib/bench/common.py", "passt_lib/flops.py", "passt_lib/precision.py")
MEMORY = ("passt_lib/bench/memory.py",)
COMPRESSION = ("passt_lib/compression.py", "passt_lib/phases.py")
TRAINING = ("passt_lib/train.py", "passt_lib/train_config.py", "passt_lib/lr.py",
            "passt_lib/evaluate.py", "passt_lib/metrics.py", "passt_lib/labels.py",
            "passt_lib/checkpoints.py")
DATA = ("passt_lib/data/", "passt_lib/audio.py")
# A table is computed from its runs by the analysis; its "# source:" line names the runs'
# commit, so a change to the analysis after the runs counts too.
STUDY = ("passt_lib/study/experiments.py", "passt_lib/study/training.py",
         "passt_lib/study/analysis.py", "passt_lib/study/figures.py")

# CSV (a pattern, first match wins) -> the files its numbers depend on
EXERCISES: dict[str, tuple[str, ...]] = {
    "results/bench/reference.csv": ("passt_lib/bench/reference.py", *TIMING, *TRANSFORMER),
    "results/bench/gpu/reference_*.csv": ("passt_lib/bench/reference.py", *TIMING, *TRANSFORMER),
    "results/bench/table_*.csv": ("passt_lib/bench/table.py", *TIMING, *MEMORY, *TRANSFORMER,
                                  *CNNS),
    "results/bench/gpu/table_*.csv": ("passt_lib/bench/table.py", *TIMING, *MEMORY,
                                      *TRANSFORMER, *CNNS),
    "results/bench/gpu/scaling_*.csv": ("passt_lib/bench/scaling.py", *TIMING, *MEMORY,
                                        *TRANSFORMER, *CNNS),
    "results/bench/coarse_to_fine_paper_steps.csv": ("passt_lib/bench/coarse_to_fine.py",
                                                     *TIMING, *TRANSFORMER, *COMPRESSION),
    "results/bench/coarse_to_fine.csv": ("passt_lib/bench/coarse_to_fine.py", *TIMING,
                                         *TRANSFORMER, *COMPRESSION, *TRAINING, *DATA),
    "results/bench/data.csv": ("passt_lib/bench/data.py", "passt_lib/bench/common.py", *DATA,
                               *TRAINING),
    "results/bench/predict_memory.csv": ("passt_lib/bench/predict_memory.py",
                                         "passt_lib/bench/common.py", "passt_lib/predict.py",
                                         "passt_lib/inference.py", "passt_lib/windows.py",
                                         "passt_lib/checkpoints.py", "passt_lib/audio.py",
                                         *TRANSFORMER),
    "results/bench/train_cpu.csv": ("passt_lib/bench/train.py", *TIMING, *TRANSFORMER,
                                    *TRAINING, *DATA),
    "results/bench/gpu/train_*.csv": ("passt_lib/bench/train.py", *TIMING, *TRANSFORMER,
                                      *TRAINING, *DATA, "passt_lib/distributed.py"),
    "results/tables/patchout.csv": ("notebooks/10_patchout.ipynb", "studies/patchout.yaml",
                                    *STUDY, *TRANSFORMER, *TRAINING, *DATA),
    "results/tables/coarse_to_fine.csv": ("notebooks/20_coarse_to_fine.ipynb",
                                          "studies/coarse_to_fine.yaml", *STUDY, *TRANSFORMER,
                                          *COMPRESSION, *TRAINING, *DATA),
    "results/tables/table1.csv": ("notebooks/30_speed.ipynb", "studies/speed.yaml", *STUDY,
                                  "passt_lib/bench/table.py", *TIMING, *MEMORY, *TRANSFORMER,
                                  *CNNS),
    "results/tables/scaling.csv": ("notebooks/30_speed.ipynb", "studies/speed.yaml", *STUDY,
                                   "passt_lib/bench/scaling.py", *TIMING, *MEMORY,
                                   *TRANSFORMER, *CNNS),
}

FRESH, STALE, NO_COMMIT, UNKNOWN, UNMAPPED = (
    "fresh", "stale", "no commit recorded", "commit unknown to this clone", "no mapping")
SOURCE_COMMITS = re.compile(r"commits ([^;]+)")


@dataclass
class Status:
    """One CSV: its state, the commits it records ({commit: dirty}) and, when stale, the
    files changed since with (lines added, lines removed)."""

    csv: str
    state: str
    commits: dict[str, bool] = field(default_factory=dict)
    changed: dict[str, tuple[int, int]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    def line(self) -> str:
        commits = ", ".join(c[:12] + (" dirty" if d else "") for c, d in self.commits.items())
        out = f"{self.state:<29} {self.csv}" + (f" ({commits})" if commits else "")
        if self.state == STALE:
            added, removed = (sum(n) for n in zip(*self.changed.values()))
            out += (f": {len(self.changed)} file{'s' if len(self.changed) != 1 else ''} changed"
                    f" (+{added} -{removed} lines): "
                    + ", ".join(f"{p} +{a} -{r}" for p, (a, r) in self.changed.items()))
        elif self.state == UNKNOWN:
            out += ": " + ", ".join(self.unknown)
        return out


def recorded_commits(path: Path) -> dict[str, bool]:
    """{commit: dirty} a CSV records: its ``commit`` (and ``dirty``) columns, or the commits
    of a ``# source:`` first line (``-dirty`` marks a dirty one); {} when it names none."""
    with open(path, newline="") as f:
        first = f.readline()
        if first.startswith("# source:"):
            m = SOURCE_COMMITS.search(first)
            names = [c.strip() for c in m.group(1).split(",")] if m else []
            return {c.removesuffix("-dirty"): c.endswith("-dirty") for c in names if c}
        f.seek(0)
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        out: dict[str, bool] = {}
        for row in rows:
            commit = (row.get("commit") or "").strip()
            if commit:
                out[commit] = out.get(commit, False) or row.get("dirty") == "True"
        return out


def exercised(csv_path: str, exercises: dict[str, tuple[str, ...]] = EXERCISES
              ) -> tuple[str, ...] | None:
    """The files ``exercises`` lists for ``csv_path`` (relative to the repository)."""
    return next((files for pattern, files in exercises.items()
                 if fnmatch.fnmatch(csv_path, pattern)), None)


def changes_since(commit: str, paths: tuple[str, ...], repo: Path) -> dict[str, tuple[int, int]]:
    """{file: (lines added, lines removed)} among ``paths`` between ``commit`` and HEAD."""
    out = run_git("diff", "--numstat", "--no-renames", commit, "HEAD", "--", *paths, cwd=repo) or ""
    changed = {}
    for line in out.splitlines():
        added, removed, name = line.split("\t", 2)
        changed[name] = (int(added) if added.isdigit() else 0,
                         int(removed) if removed.isdigit() else 0)  # "-" for binary files
    return changed


def is_git_checkout(repo: Path) -> bool:
    return run_git("rev-parse", "--verify", "--quiet", "HEAD", cwd=repo) is not None


def committed_csvs(repo: Path) -> list[str]:
    return sorted((run_git("ls-files", "--", "results/*.csv", cwd=repo) or "").splitlines())


def check(repo: Path = REPO_ROOT, exercises: dict[str, tuple[str, ...]] = EXERCISES
          ) -> list[Status]:
    """The :class:`Status` of every CSV committed under ``results/`` of ``repo``."""
    statuses = []
    for name in committed_csvs(repo):
        commits = recorded_commits(repo / name)
        files = exercised(name, exercises)
        if not commits:
            statuses.append(Status(name, NO_COMMIT))
            continue
        if files is None:
            statuses.append(Status(name, UNMAPPED, commits))
            continue
        unknown = [c for c in commits
                   if run_git("rev-parse", "--verify", "--quiet", f"{c}^{{commit}}", cwd=repo) is None]
        if unknown:
            statuses.append(Status(name, UNKNOWN, commits, unknown=unknown))
            continue
        changed: dict[str, tuple[int, int]] = {}
        for commit in commits:  # rows of several commits: the most changed since any of them
            for path, (a, r) in changes_since(commit, files, repo).items():
                if a + r > sum(changed.get(path, (0, 0))):
                    changed[path] = (a, r)
        statuses.append(Status(name, STALE if changed else FRESH, commits,
                               dict(sorted(changed.items()))))
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m passt_lib.stale",
        description="Which committed result CSVs are older than the code they measure.")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the git checkout to check")
    args = parser.parse_args(argv)
    if not is_git_checkout(args.repo):
        print(f"{args.repo} is not a git checkout: the commits results record cannot be compared",
              file=sys.stderr)
        return 2
    for status in check(args.repo):
        print(status.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
