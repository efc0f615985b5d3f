"""What a result was made with: git commit, dirty flag, package versions, device, precision.

Every notebook run writes ``env.json`` from :func:`environment`, every benchmark row
carries :func:`device_name`, and tables and figures record the commits of the runs
they were drawn from. Used by ``bench``, ``study`` and ``inference`` alike, so it
lives at the top level and imports nothing of theirs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torchaudio", "timm", "numpy", "papermill", "matplotlib", "passt-study")
CPU_VENDORS = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}
# /proc/cpuinfo flag -> the widest matrix-multiply instructions it marks, best first
MATMUL_ISAS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX512"),
               ("avx2", "AVX2"), ("sve", "SVE"), ("asimd", "NEON"))


def run_git(*args: str, cwd: Path = REPO_ROOT) -> str | None:
    """The stripped output of ``git ARGS`` in ``cwd``, or None when git fails or is absent."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(cwd: Path = REPO_ROOT) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the checkout holding passt_lib."""
    commit = run_git("rev-parse", "HEAD", cwd=cwd)
    status = run_git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpuinfo(text: str | None = None) -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (``text``: its contents); {} without it."""
    if text is None:
        try:
            with open("/proc/cpuinfo") as f:
                text = f.read()
        except OSError:
            return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break  # the end of the first processor's block
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def matmul_isa(flags: str) -> str | None:
    """The widest matrix-multiply instruction set among cpuinfo ``flags`` (or ARM ``Features``)."""
    have = set(flags.split())
    return next((name for flag, name in MATMUL_ISAS if flag in have), None)


def cpu_name(info: dict[str, str], threads: int) -> str:
    """What decides a CPU's speed, e.g. "AMD EPYC (family 25 model 17, AVX512-BF16, 2 threads)".

    The model name alone cannot tell machines apart (a virtual machine may report only
    "AMD EPYC"); the family and model numbers say which generation it is, the instruction
    set which matmul kernels run (bf16 is native from AVX512-BF16 on), the threads how many.
    """
    vendor = CPU_VENDORS.get(info.get("vendor_id", ""), info.get("vendor_id"))
    name = info.get("model name") or vendor or platform.processor() or platform.machine() or "cpu"
    if vendor and not name.startswith(vendor):
        name = f"{vendor} {name}"
    parts = []
    if "cpu family" in info:
        parts.append(f"family {info['cpu family']}"
                     + (f" model {info['model']}" if "model" in info else ""))
    isa = matmul_isa(info.get("flags") or info.get("Features") or "")
    parts.append(isa or "no AVX2")
    parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    return f"{name} ({', '.join(parts)})"


def device_name(device) -> str:
    """The device a number was measured on: the CUDA device's name, or :func:`cpu_name`."""
    import torch  # not at the top: `passt-study run` records provenance without loading torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name(cpuinfo(), torch.get_num_threads())


def resolve(device: str, precision: str | None) -> tuple[str, str | None]:
    """("auto" device -> "cuda" or "cpu", "auto" precision -> what it resolves to there)."""
    if device == "auto" or (precision == "auto"):
        import torch  # only for "auto": `passt-study run` starts without torch

        from passt_lib.precision import resolve_precision  # imports torch; as above

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if precision == "auto":
            precision = resolve_precision(precision, device)
    return device, precision


def environment(device: str = "cpu", precision: str | None = None) -> dict:
    """The env.json of a run: commit, dirty flag, versions, device, precision, host.

    "auto" device / precision are recorded as what they resolve to on this machine.
    """
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
