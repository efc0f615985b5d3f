"""Peak memory of one training step, on top of what is held before it.

On CUDA from the allocator (``torch.cuda.max_memory_allocated``); on CPU from the
kernel's resident-set high-water mark (``VmHWM``), reset just before the step by
writing 5 to ``/proc/self/clear_refs``, minus the resident set before the step;
where that reset is not allowed, the resident set sampled every millisecond.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Callable

import torch

_MIB = 1024.0 * 1024.0


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not found in /proc/self/status")


def _release_freed_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back to the kernel
    except (OSError, AttributeError):
        pass


def _can_reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _proc_status_kib("VmHWM")
        return True
    except OSError:
        return False


def memory_method(device="cpu") -> str:
    """How :func:`peak_step_memory` measures on ``device`` (written next to its numbers)."""
    device = torch.device(device)
    if device.type == "cuda":
        return "cuda max_memory_allocated during the step minus allocated before it"
    if _can_reset_hwm():
        return "VmHWM (reset via /proc/self/clear_refs) during the step minus VmRSS before it"
    return "VmRSS sampled every 1 ms during the step minus VmRSS before it"


def peak_step_memory(fn: Callable[[], object], device="cpu") -> int:
    """Bytes by which one call of ``fn`` raises memory above what is held before it.

    What is held before (weights, gradients, optimiser state, inputs) is not
    counted; what the step allocates on top (activations, temporaries) is.
    Call ``fn`` once beforehand so that lazily created state (e.g. AdamW's
    moments) already exists.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    _release_freed_memory()
    if _can_reset_hwm():
        before = _proc_status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        fn()
        peak = _proc_status_kib("VmHWM")
        return int((peak - before) * 1024)
    return _sampled_rss_peak(fn)


def _sampled_rss_peak(fn: Callable[[], object]) -> int:
    before = _proc_status_kib("VmRSS")
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _proc_status_kib("VmRSS"))
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], _proc_status_kib("VmRSS"))
    return int((peak[0] - before) * 1024)


def mib(n_bytes: float) -> float:
    return n_bytes / _MIB
