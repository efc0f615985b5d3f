"""Jupyter kernels for the notebooks: their environment, warm kernels kept per worker, shutdown.

A kernel inherits its environment when it starts: :func:`kernel_env` makes ``passt_lib``
importable, selects the Agg backend and sets a thread budget. Kernels talk over IPC sockets
in a private folder (:func:`ipc_kernel_manager`), not TCP. A worker process keeps one warm
kernel per (kernel, threads, cwd) for all its runs (:func:`warm_kernel`), shut down at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import tempfile
from collections.abc import Iterator
from multiprocessing import util

from jupyter_client.kernelspec import find_kernel_specs
from jupyter_client.manager import AsyncKernelManager

from passt_lib.provenance import REPO_ROOT


def default_kernel() -> str:
    """The project's kernel where it is installed (``make setup``), else python3."""
    return "passt-study" if "passt-study" in find_kernel_specs() else "python3"


@contextlib.contextmanager
def kernel_env(threads: int | None) -> Iterator[None]:
    """Environment the kernel inherits: passt_lib importable, Agg backend, a thread budget."""
    saved = dict(os.environ)
    path = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)
    os.environ.setdefault("MPLBACKEND", "agg")
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


_KERNELS: dict[tuple, object] = {}  # (kernel name, threads, cwd) -> a warm AsyncKernelManager


def ipc_kernel_manager(kernel_name: str):
    """A kernel manager whose kernel talks over IPC sockets in a private folder: no TCP ports,
    so no "running over TCP without encryption" warning from every kernel."""
    sockets = tempfile.mkdtemp(prefix="passt-study-kernel-")
    return AsyncKernelManager(kernel_name=kernel_name, transport="ipc",
                              ip=os.path.join(sockets, "kernel"))


@contextlib.contextmanager
def one_kernel(kernel_name: str) -> Iterator[object]:
    """An IPC kernel for one notebook, shut down afterwards."""
    km = ipc_kernel_manager(kernel_name)
    try:
        yield km
    finally:
        if km.has_kernel:
            with contextlib.suppress(Exception):
                asyncio.run(km.shutdown_kernel(now=True))


def warm_kernel(kernel_name: str, threads: int | None, cwd: str):
    """This process's warm kernel for (``kernel_name``, ``threads``, ``cwd``), started by the
    first notebook that uses it, inside ``kernel_env``, so it inherits the thread budget."""
    key = (kernel_name, threads, cwd)
    if key not in _KERNELS:
        _KERNELS[key] = ipc_kernel_manager(kernel_name)
        if len(_KERNELS) == 1:  # at exit: of this process, or of a pool worker
            atexit.register(shutdown_kernels)
            util.Finalize(None, shutdown_kernels, exitpriority=10)
    return _KERNELS[key]


def shutdown_kernels(keys=None) -> None:
    """Shut down this process's warm kernels (``keys``: only these)."""
    for key in list(keys if keys is not None else _KERNELS):
        km = _KERNELS.pop(key, None)
        if km is not None and km.has_kernel:
            with contextlib.suppress(Exception):
                asyncio.run(km.shutdown_kernel(now=True))
