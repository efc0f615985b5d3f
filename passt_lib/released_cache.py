"""The authors' released weights on disk: downloaded once into a cache, or put there by hand.

``released_weights(name)`` returns the path of the release file of a released architecture
(``passt_lib.released``) in the cache folder, ``$PASST_STUDY_CACHE`` or
``~/.cache/passt-study/released``. A missing file is downloaded there once (atomically: a
partial download never counts); where the network is not reachable the error names the
release file, its address and where to put it. Only recipes that need weights and were given
none call it; nothing else in the project touches the network.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

from passt_lib.released import released

CACHE_ENV = "PASST_STUDY_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "passt-study" / "released")


def urlopen_download(url: str, dest: Path) -> None:
    """Write the file at ``url`` to ``dest`` (the default way to fetch a release file)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)


def released_weights(name: str, cache: str | Path | None = None,
                     download: Callable[[str, Path], None] | None = None) -> Path:
    """The release file of architecture ``name`` in ``cache`` (default :func:`cache_dir`),
    downloaded with ``download(url, dest)`` when missing."""
    arch = released(name)
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / Path(arch.asset).name
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        (download or urlopen_download)(arch.url, tmp)
        os.replace(tmp, path)
    except OSError as exc:  # URLError, timeouts and refused connections are OSErrors
        tmp.unlink(missing_ok=True)
        raise FileNotFoundError(
            f"the released weights {name} are not in the cache and could not be downloaded "
            f"({type(exc).__name__}: {exc}); download {Path(arch.asset).name} from {arch.url} "
            f"and put it at {path} (or set {CACHE_ENV} to the folder holding it)") from None
    return path
