"""A run directory, seen from inside a notebook.

A run directory holds ``params.json``, ``env.json``, the notebook's figures and
side files, and ``metrics.json``. ``metrics.json`` is written last and
atomically, and carries the run's config hash: "done" means exactly "metrics.json
exists with the hash of these parameters", which gives the runner skip-if-done
and resume after a kill.

In a notebook::

    run = start_run(out_dir, "10_patchout", params, device=device, precision=precision)
    ...
    run.finish({"mAP": 0.31, ...})
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from passt_lib.atomic import atomic_write_json, canonical_json, read_json
from passt_lib.provenance import REPO_ROOT, environment

PARAMS_FILE, METRICS_FILE, ENV_FILE, FAILED_FILE = "params.json", "metrics.json", "env.json", "failed.json"


def notebook_stem(notebook: str | Path) -> str:
    return Path(notebook).name.removesuffix(".ipynb")


def config_hash(notebook: str | Path, params: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the canonical JSON of notebook name + parameters."""
    blob = canonical_json({"notebook": notebook_stem(notebook), "params": params})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def is_done(run_dir: str | Path, expected_hash: str) -> bool:
    metrics = read_json(Path(run_dir) / METRICS_FILE)
    return isinstance(metrics, dict) and metrics.get("config_hash") == expected_hash


class Run:
    """Writes a run's files; create it with :func:`start_run`."""

    def __init__(self, out_dir: Path, notebook: str, params: dict[str, Any], hash_: str) -> None:
        self.dir, self.notebook, self.params, self.hash = out_dir, notebook, params, hash_
        self.t0 = time.perf_counter()

    def path(self, name: str) -> Path:
        return self.dir / name

    def finish(self, metrics: dict[str, Any]) -> Path:
        """Write metrics.json (last, atomically). Values must be JSON numbers/strings/lists."""
        if "config_hash" in metrics:
            raise ValueError("metrics may not define 'config_hash'; the run sets it")
        out = {"config_hash": self.hash, "notebook": self.notebook,
               "run_seconds": round(time.perf_counter() - self.t0, 3), **metrics}
        return atomic_write_json(self.dir / METRICS_FILE, out)

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, hash={self.hash})"


def start_run(
    out_dir: str | Path,
    notebook: str,
    params: dict[str, Any],
    *,
    device: str = "cpu",
    precision: str | None = None,
) -> Run:
    """Create the run directory and write params.json and env.json.

    ``params`` are the notebook's parameters except ``out_dir``. An empty
    ``out_dir`` (running the notebook by hand) means
    ``results/runs/manual/<notebook>-<hash>/`` in the repository.
    """
    notebook = notebook_stem(notebook)
    hash_ = config_hash(notebook, params)
    out = Path(out_dir) if out_dir else REPO_ROOT / "results" / "runs" / "manual" / f"{notebook}-{hash_}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / PARAMS_FILE, {"notebook": notebook, "config_hash": hash_, "params": params})
    atomic_write_json(out / ENV_FILE, environment(device, precision))
    return Run(out, notebook, params, hash_)
