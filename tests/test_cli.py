"""The ``passt-study`` dispatcher: help lists every subcommand, bad input exits non-zero."""

import subprocess
import sys
from pathlib import Path

import pytest

from passt_lib import cli

EXPECTED = {"data", "train", "bench", "run", "study", "figures"}
SCRIPT = Path(sys.executable).with_name("passt-study")


def _help_text(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    return capsys.readouterr().out


def test_subcommand_table_has_the_documented_commands():
    assert EXPECTED <= set(cli.SUBCOMMANDS)
    for name, (module, help_) in cli.SUBCOMMANDS.items():
        assert module.startswith("passt_lib.") and help_.strip(), name


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_subcommand(capsys, flag):
    out = _help_text(capsys, [flag])
    assert out.startswith("usage: passt-study")
    listed = {line.split()[0] for line in out.splitlines()
              if line.startswith("  ") and line.split() and line.split()[0] in cli.SUBCOMMANDS}
    assert listed == set(cli.SUBCOMMANDS) and EXPECTED <= listed
    for name, (_, help_) in cli.SUBCOMMANDS.items():
        assert help_ in out, name


def test_unknown_subcommand_exits_nonzero_naming_it(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate", "--fast"])
    assert info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "frobnicate" in err and "invalid choice" in err
    assert "train" in err  # the valid choices are listed


def test_no_subcommand_exits_nonzero(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code not in (0, None)
    assert "SUBCOMMAND" in capsys.readouterr().err


def test_subcommand_help_is_dispatched_to_its_module(capsys):
    out = _help_text(capsys, ["train", "--help"])
    assert out.startswith("usage: passt-study train")
    assert "--preset" in out and "--set" in out


def test_dispatch_passes_the_rest_and_returns_its_status(monkeypatch):
    import types

    seen = []
    fake = types.ModuleType("fake_sub")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "fake_sub", fake)
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", ("fake_sub", "a fake"))
    assert cli.main(["fake", "--x", "1", "pos"]) == 3
    assert seen == [["--x", "1", "pos"]]
    fake.main = lambda argv: None
    assert cli.main(["fake"]) == 0


@pytest.mark.skipif(not SCRIPT.exists(), reason="console script not installed in this env")
def test_console_script_help_and_unknown_subcommand():
    ok = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0
    for name in EXPECTED:
        assert f"\n  {name} " in ok.stdout, name
    bad = subprocess.run([str(SCRIPT), "nosuchcmd"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "nosuchcmd" in bad.stderr


def test_top_level_help_does_not_import_torch():
    code = ("import sys, contextlib, io\n"
            "from passt_lib import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        cli.main(['--help'])\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
