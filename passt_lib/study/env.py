"""What a result was made with: git commit, dirty flag, package versions, device, precision.

Every run writes ``env.json`` from :func:`environment`; tables and figures
record the commits of the runs they were drawn from.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "torchaudio", "timm", "numpy", "papermill", "matplotlib", "passt-study")


def _git(*args: str, cwd: Path = REPO_ROOT) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(cwd: Path = REPO_ROOT) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the checkout holding passt_lib."""
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_name(device: str) -> str:
    """A human-readable name of the device (GPU model or CPU model)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def resolve(device: str, precision: str | None) -> tuple[str, str | None]:
    """("auto" device -> "cuda" or "cpu", "auto" precision -> what it resolves to there)."""
    if device == "auto" or (precision == "auto"):
        import torch

        from passt_lib.precision import resolve_precision

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if precision == "auto":
            precision = resolve_precision(precision, device)
    return device, precision


def environment(device: str = "cpu", precision: str | None = None) -> dict:
    """The env.json of a run: commit, dirty flag, versions, device, precision, host.

    "auto" device / precision are recorded as what they resolve to on this machine.
    """
    import os

    device, precision = resolve(device, precision)
    return {
        **git_state(),
        "versions": package_versions(),
        "device": device,
        "device_name": device_name(device),
        "precision": precision,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
