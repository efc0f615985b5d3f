"""Committed results say what made them: every CSV records its commit, the report and README
cite only files that exist, and ``make stale`` (passt_lib.stale) tells a CSV older than its
code from a current one."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from passt_lib import stale
from passt_lib.provenance import REPO_ROOT

# Committed CSVs that record no commit, each with the reason it cannot be recovered. Empty:
# every CSV under results/ records one today.
NO_COMMIT_ALLOWED: dict[str, str] = {}
CITING = ("README.md", "results/REPORT.md")
CITED = re.compile(r"results/[\w.*<>/|-]*[\w*>]")

needs_git = pytest.mark.skipif(not stale.is_git_checkout(REPO_ROOT),
                               reason="not a git checkout: nothing is committed to check")


@needs_git
def test_every_committed_csv_records_its_commit():
    csvs = stale.committed_csvs(REPO_ROOT)
    assert csvs, "no CSV committed under results/"
    missing = [p for p in csvs if not stale.recorded_commits(REPO_ROOT / p)]
    assert sorted(set(missing) - set(NO_COMMIT_ALLOWED)) == [], (
        "these CSVs record no commit (a commit column, or a '# source: ... commits ...' line)")


@needs_git
def test_every_committed_csv_has_its_files_listed():
    """A new kind of CSV needs its line in passt_lib.stale.EXERCISES, or `make stale` cannot
    judge it."""
    assert [p for p in stale.committed_csvs(REPO_ROOT) if stale.exercised(p) is None] == []


def cited_paths(text: str) -> set[str]:
    """Paths under results/ that a text names, less placeholders (``<gpu>``) and outputs git
    ignores (per-run folders, the tour handout)."""
    paths = {m.rstrip(".") for m in CITED.findall(text)}
    return {p for p in paths if "<" not in p}


def test_cited_paths_are_found_in_text():
    text = ("see `results/bench/reference.csv`), and results/figures/*.png|pdf; "
            "`results/bench/gpu/train_<gpu>.csv` and results/REPORT.md.")
    assert cited_paths(text) == {"results/bench/reference.csv", "results/figures/*.png|pdf",
                                 "results/REPORT.md"}


@needs_git
@pytest.mark.parametrize("doc", CITING)
def test_docs_cite_no_missing_file(doc):
    cited = cited_paths((REPO_ROOT / doc).read_text())
    assert cited, f"{doc} cites nothing under results/: has the pattern stopped matching?"
    missing = []
    for path in sorted(cited):
        if subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT).returncode == 0:
            continue  # an output the reader makes (results/runs/..., results/tour.html)
        if "*" in path:  # a glob, with "|" between alternative endings: "*.png|pdf"
            stem, *others = path.split("|")
            base = stem.rsplit(".", 1)[0]
            patterns = [stem, *(f"{base}.{o}" for o in others)]
            if not all(list(REPO_ROOT.glob(p)) for p in patterns):
                missing.append(path)
        elif not (REPO_ROOT / path).exists():
            missing.append(path)
    assert missing == [], f"{doc} cites files that do not exist"


# ---------------------------------------------------------------------------- make stale itself
def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_stale_classifies_csvs(tmp_path):
    repo = tmp_path
    git(repo, "init", "-q")
    (repo / "lib").mkdir()
    (repo / "lib/model.py").write_text("width = 1\n")
    (repo / "lib/data.py").write_text("clips = 1\n")
    first = commit_all(repo, "code")

    (repo / "results/bench").mkdir(parents=True)
    (repo / "results/tables").mkdir()
    (repo / "results/bench/model.csv").write_text(f"step_s,commit,dirty\n0.1,{first[:12]},False\n")
    (repo / "results/tables/data.csv").write_text(
        f"# source: 2 runs; commits {first[:10]}; torch 2.11.0\nclips\n1\n")
    (repo / "results/bench/nocommit.csv").write_text("step_s\n0.1\n")
    (repo / "results/bench/elsewhere.csv").write_text(f"commit\n{'0' * 40}\n")
    (repo / "results/bench/unmapped.csv").write_text(f"commit\n{first}\n")
    commit_all(repo, "results")

    (repo / "lib/model.py").write_text("width = 2\nheads = 4\n")
    commit_all(repo, "wider model")

    exercises = {"results/bench/model.csv": ("lib/model.py",),
                 "results/tables/data.csv": ("lib/data.py",),
                 "results/bench/nocommit.csv": ("lib/model.py",),
                 "results/bench/elsewhere.csv": ("lib/model.py",)}
    got = {s.csv: s for s in stale.check(repo, exercises)}
    assert {name: s.state for name, s in got.items()} == {
        "results/bench/model.csv": stale.STALE,
        "results/tables/data.csv": stale.FRESH,
        "results/bench/nocommit.csv": stale.NO_COMMIT,
        "results/bench/elsewhere.csv": stale.UNKNOWN,
        "results/bench/unmapped.csv": stale.UNMAPPED,
    }
    assert got["results/bench/model.csv"].changed == {"lib/model.py": (2, 1)}
    assert "lib/model.py +2 -1" in got["results/bench/model.csv"].line()
    assert got["results/tables/data.csv"].commits == {first[:10]: False}


def test_stale_reports_and_refuses_outside_git(tmp_path, capsys):
    assert stale.main(["--repo", str(REPO_ROOT)]) == (0 if stale.is_git_checkout(REPO_ROOT)
                                                      else 2)
    assert stale.main(["--repo", str(tmp_path)]) == 2
    assert "not a git checkout" in capsys.readouterr().err
