"""Debian packages the embedded dataset renders its audio from (a ``make setup`` step).

    python -m passt_lib.system_packages --check fluidsynth espeak-ng ...
    python -m passt_lib.system_packages --install fluidsynth espeak-ng ...

``--install`` does nothing (quietly, in well under a second) when every package is
installed. Otherwise it runs ``apt-get update`` and ``apt-get install -y`` for the
missing ones, directly as root or through ``sudo``. Without apt (or without the
right to use it) it exits non-zero, listing the packages and pointing at the
README's conda-forge equivalents. Setting ``PASST_STUDY_SKIP_APT=1`` turns that
failure into a note, for machines where the sources come from elsewhere.

Only the standard library is used, so the file also runs as a plain script.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence

README_HINT = "README.md, section 'Audio sources without apt'"
SKIP_ENV = "PASST_STUDY_SKIP_APT"
# dpkg states in which a package's files are in place.
INSTALLED_STATES = {"installed", "triggers-pending", "triggers-awaited"}

Query = Callable[[Sequence[str]], dict[str, str]]
Runner = Callable[[Sequence[str]], int]


class SystemPackageError(RuntimeError):
    """Packages are missing and cannot be installed here."""


def dpkg_status(names: Sequence[str]) -> dict[str, str]:
    """``{package: dpkg status}`` for the known ones among ``names``, in one dpkg-query call.

    Unknown packages are left out. Raises FileNotFoundError without dpkg-query.
    """
    if not names:
        return {}
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Status}\n", *names],
        capture_output=True, text=True, check=False,
    )  # exits 1 when some name is unknown; the known ones are still listed
    status = {}
    for line in proc.stdout.splitlines():
        package, _, state = line.partition("\t")
        if package:
            status[package] = state.strip()
    return status


def is_installed(status: str | None) -> bool:
    """True for a dpkg status such as ``install ok installed``."""
    return bool(status) and status.split()[-1] in INSTALLED_STATES


def missing_packages(names: Iterable[str], query: Query = dpkg_status) -> list[str]:
    """The packages among ``names`` that are not installed, in the given order.

    ``query(names) -> {name: dpkg status}`` is injectable for tests; when dpkg-query does
    not exist every package counts as missing.
    """
    names = list(dict.fromkeys(names))  # unique, order kept
    try:
        status = query(names)
    except FileNotFoundError:
        return names
    return [n for n in names if not is_installed(status.get(n))]


def failure_message(missing: Sequence[str], reason: str) -> str:
    pkgs = " ".join(missing)
    return (
        f"missing Debian packages: {pkgs}\n"
        f"{reason}\n"
        f"Install them with:  sudo apt-get install -y {pkgs}\n"
        f"Without apt, see {README_HINT} for conda-forge equivalents, then set "
        f"{SKIP_ENV}=1 to skip this check."
    )


def install_commands(missing: Sequence[str], as_root: bool) -> list[list[str]]:
    """The apt-get commands that install ``missing`` (prefixed with sudo when not root)."""
    prefix = [] if as_root else ["sudo"]
    return [
        [*prefix, "apt-get", "update"],
        [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
         *missing],
    ]


def run_command(cmd: Sequence[str]) -> int:
    return subprocess.run(list(cmd), check=False).returncode


def install(
    names: Iterable[str],
    *,
    query: Query = dpkg_status,
    run: Runner = run_command,
    which: Callable[[str], str | None] = shutil.which,
    euid: int | None = None,
) -> list[str]:
    """Install the missing packages among ``names``; return the ones that were installed.

    Raises SystemPackageError (with the message for the user) when apt is not available,
    not permitted, or fails. All side effects go through the injectable arguments.
    """
    missing = missing_packages(names, query)
    if not missing:
        return []
    if which("apt-get") is None:
        raise SystemPackageError(failure_message(missing, "apt-get is not available here."))
    euid = os.geteuid() if euid is None else euid
    as_root = euid == 0
    if not as_root and which("sudo") is None:
        raise SystemPackageError(failure_message(
            missing, "not running as root and sudo is not available."))
    update, install_cmd = install_commands(missing, as_root)
    # A failed update (one unreachable mirror, no network) is not fatal: the package
    # lists already on disk may be enough. A failed install is.
    update_rc = run(update)
    rc = run(install_cmd)
    if rc != 0:
        note = f" (`{' '.join(update)}` also failed: {update_rc})" if update_rc else ""
        raise SystemPackageError(failure_message(
            missing, f"`{' '.join(install_cmd)}` failed with exit status {rc}{note}."))
    still = missing_packages(missing, query)
    if still:
        raise SystemPackageError(failure_message(still, "apt-get did not install them."))
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m passt_lib.system_packages",
        description="Check or install the Debian packages the embedded dataset needs.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--install", nargs="+", metavar="PKG",
                      help="install the missing packages (quiet when none is missing)")
    mode.add_argument("--check", nargs="+", metavar="PKG",
                      help="report missing packages; exit 1 if any")
    args = parser.parse_args(argv)

    # Module-level lookups at call time, so tests can swap dpkg/apt for fakes.
    query, run, which = dpkg_status, run_command, shutil.which
    if args.check:
        missing = missing_packages(args.check, query)
        if missing:
            print(f"missing Debian packages: {' '.join(missing)}")
            return 1
        print(f"all {len(set(args.check))} Debian packages are installed")
        return 0

    try:
        installed = install(args.install, query=query, run=run, which=which)
    except SystemPackageError as err:
        if os.environ.get(SKIP_ENV) == "1":
            print(f"note: {SKIP_ENV}=1, continuing without: "
                  f"{' '.join(missing_packages(args.install, query))}", file=sys.stderr)
            return 0
        print(f"error: {err}", file=sys.stderr)
        return 1
    if installed:
        print(f"installed Debian packages: {' '.join(installed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
