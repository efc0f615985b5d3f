"""The Debian-package step of `make setup`, tested with fakes (no apt calls)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from passt_lib import system_packages as sp

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = "install ok installed"


class FakeSystem:
    """dpkg-query, apt-get and sudo in memory; apt installs what it is asked for."""

    def __init__(self, installed=(), known=(), apt=True, sudo=True, install_rc=0, update_rc=0):
        self.status = {p: INSTALLED for p in installed}
        self.status.update({p: "deinstall ok config-files" for p in known})
        self.tools = {"apt-get"} if apt else set()
        if sudo:
            self.tools.add("sudo")
        self.install_rc, self.update_rc = install_rc, update_rc
        self.commands: list[list[str]] = []

    def query(self, names):
        return {n: self.status[n] for n in names if n in self.status}

    def which(self, tool):
        return f"/usr/bin/{tool}" if tool in self.tools else None

    def run(self, cmd):
        self.commands.append(list(cmd))
        if "update" in cmd:
            return self.update_rc
        if self.install_rc == 0:
            for p in cmd[cmd.index("-y") + 1:]:
                self.status[p] = INSTALLED
        return self.install_rc

    def install(self, names, euid=0):
        return sp.install(names, query=self.query, run=self.run, which=self.which, euid=euid)


@pytest.mark.parametrize(
    "status, expected",
    [
        ("install ok installed", True),
        ("install ok triggers-pending", True),
        ("deinstall ok config-files", False),
        ("install ok half-configured", False),
        ("install ok unpacked", False),
        ("", False),
        (None, False),
    ],
)
def test_is_installed(status, expected):
    assert sp.is_installed(status) is expected


def test_missing_packages_keeps_order_and_dedupes():
    fake = FakeSystem(installed=["flite"], known=["espeak-ng"])
    got = sp.missing_packages(["fluidsynth", "flite", "espeak-ng", "fluidsynth"], fake.query)
    assert got == ["fluidsynth", "espeak-ng"]


def test_missing_packages_without_dpkg_counts_all_missing():
    def no_dpkg(names):
        raise FileNotFoundError("dpkg-query")

    assert sp.missing_packages(["a", "b"], no_dpkg) == ["a", "b"]


def test_nothing_missing_runs_nothing():
    fake = FakeSystem(installed=["a", "b"], apt=False, sudo=False)
    assert fake.install(["a", "b"], euid=1000) == []
    assert fake.commands == []


def test_root_installs_with_apt_get_directly():
    fake = FakeSystem(installed=["a"])
    assert fake.install(["a", "b", "c"], euid=0) == ["b", "c"]
    assert fake.commands == [
        ["apt-get", "update"],
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "b", "c"],
    ]


def test_non_root_uses_sudo():
    fake = FakeSystem()
    assert fake.install(["b"], euid=1000) == ["b"]
    assert all(cmd[0] == "sudo" for cmd in fake.commands)
    assert fake.commands[1][-3:] == ["install", "-y", "b"]


@pytest.mark.parametrize(
    "fake, euid, reason",
    [
        (FakeSystem(apt=False), 0, "apt-get is not available"),
        (FakeSystem(sudo=False), 1000, "sudo is not available"),
        (FakeSystem(install_rc=100, update_rc=100), 0, "failed with exit status 100"),
    ],
)
def test_failures_list_packages_and_point_at_readme(fake, euid, reason):
    with pytest.raises(sp.SystemPackageError) as info:
        fake.install(["fluidsynth", "flite"], euid=euid)
    msg = str(info.value)
    assert reason in msg
    assert "fluidsynth flite" in msg
    assert "README.md, section 'Audio sources without apt'" in msg


def test_failed_update_alone_is_not_fatal():
    fake = FakeSystem(update_rc=100)
    assert fake.install(["b"], euid=0) == ["b"]


def test_install_that_leaves_packages_missing_is_an_error():
    fake = FakeSystem()
    fake.run = lambda cmd: fake.commands.append(list(cmd)) or 0  # "succeeds", installs nothing
    with pytest.raises(sp.SystemPackageError, match="did not install"):
        fake.install(["b"], euid=0)


def test_main_exit_codes(monkeypatch, capsys):
    fake = FakeSystem(installed=["a"], apt=False)
    monkeypatch.setattr(sp, "dpkg_status", fake.query)
    monkeypatch.setattr(sp.shutil, "which", fake.which)
    monkeypatch.setattr(sp, "run_command", fake.run)

    assert sp.main(["--install", "a"]) == 0
    assert capsys.readouterr().out == ""  # quiet when nothing is missing
    assert sp.main(["--check", "a"]) == 0
    assert sp.main(["--check", "a", "b"]) == 1
    assert "missing Debian packages: b" in capsys.readouterr().out
    monkeypatch.delenv(sp.SKIP_ENV, raising=False)
    assert sp.main(["--install", "a", "b"]) == 1
    assert "Audio sources without apt" in capsys.readouterr().err
    monkeypatch.setenv(sp.SKIP_ENV, "1")
    assert sp.main(["--install", "a", "b"]) == 0
    assert fake.commands == []


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query")
def test_real_dpkg_query_is_fast_and_reports_unknown_as_missing():
    # Read-only: dpkg-query is queried, apt is never called.
    t0 = time.perf_counter()
    missing = sp.missing_packages(["dpkg", "no-such-package-passt-study"])
    assert time.perf_counter() - t0 < 1.0
    assert missing == ["no-such-package-passt-study"]


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query")
def test_script_check_runs_without_importing_torch():
    # The module only needs the standard library, so run as a file it starts fast.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "passt_lib" / "system_packages.py"), "--check", "dpkg"],
        capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "installed" in proc.stdout
