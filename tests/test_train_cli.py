"""``passt-study train --preset NAME --scale smoke --out DIR [--set key=value]`` end to end.

The command line has no flag for a DataConfig: ``--set data.FIELD=...`` only overrides fields
on top of the embedded dataset (which would then be built). Explicit data goes in through the
optional positional config file, so these tests write a tiny PANNs-layout HDF5 file (as
tests/test_train.py does) and a JSON config holding only ``data``; everything else comes from
the flags. ``embedded.ensure`` is replaced by a function that fails, to prove nothing is built.
"""

import csv
import json

import pytest
from tones import write_tones

from passt_lib import cli
from passt_lib.data import embedded
from passt_lib.data.config import DataConfig

SR = 32000


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """A JSON config that holds only the explicit tiny dataset."""
    root = tmp_path_factory.mktemp("tones_cli")
    data = DataConfig(format="panns-hdf5", train_path=write_tones(root / "train.h5", 16, seed=0),
                      eval_path=write_tones(root / "eval.h5", 12, seed=1), n_classes=4,
                      clip_seconds=1.0, name="tones")
    path = root / "data.json"
    path.write_text(json.dumps({"data": data.to_dict()}))
    return path


@pytest.fixture(autouse=True)
def no_embedded_build(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the embedded dataset must not be built in these tests")

    monkeypatch.setattr(embedded, "ensure", refuse)


def run_train(data_file, preset, out, *sets):
    argv = ["train", str(data_file), "--preset", preset, "--scale", "smoke", "--out", str(out),
            "--no-progress", "--set", "batch_size=8", "--set", "threads=1"]
    for s in sets:
        argv += ["--set", s]
    return cli.main(argv)


def test_train_cli_multilabel_writes_sane_metrics(data_file, tmp_path, capsys):
    out = tmp_path / "run"
    # passt-s-n (not the TrainConfig default "passt-s") shows that --preset is what is used
    assert run_train(data_file, "passt-s-n", out, "epochs=2") == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("eval_map", "prior_map", "train_seconds", "epochs", "preset"):
        assert key in m, key
    assert m["preset"] == "passt-s-n"
    assert m["epochs"] == 2
    assert 0 <= m["eval_map"] <= 1 and 0 < m["prior_map"] < 1
    assert m["train_seconds"] > 0
    assert "eval_accuracy" not in m
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert (out / "checkpoint.pt").exists()
    printed = capsys.readouterr().out
    assert "passt-s-n @ smoke" in printed and "metrics.json" in printed


def test_train_cli_singlelabel_reports_accuracy(data_file, tmp_path):
    out = tmp_path / "single"
    assert run_train(data_file, "passt-s", out, "epochs=1", "data.task=singlelabel",
                     "data.spec_mixup_alpha=0") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["preset"] == "passt-s" and m["epochs"] == 1 and m["train_seconds"] > 0
    assert 0 <= m["eval_accuracy"] <= 1 and "prior_accuracy" in m
    assert "eval_map" not in m


def test_train_cli_rejects_bad_input_without_training(data_file, tmp_path, capsys):
    out = tmp_path / "bad"
    assert run_train(data_file, "passt-s", out, "epochs=zero") == 2
    assert "expected an int" in capsys.readouterr().err
    assert run_train(data_file, "passt-s", out, "precision=fp8") == 2
    assert "unknown precision" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--scale", "smoke", "--out", str(out)])  # no preset, no config
    assert info.value.code != 0 and "--preset" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()


def test_train_cli_missing_data_file_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "missing.json"
    missing = tmp_path / "nowhere" / "train.h5"
    cfg.write_text(json.dumps({"data": DataConfig(
        format="panns-hdf5", train_path=str(missing), eval_path=str(missing), n_classes=4,
        clip_seconds=1.0).to_dict()}))
    rc = cli.main(["train", str(cfg), "--preset", "passt-s", "--scale", "smoke",
                   "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_set_data_format_or_train_path_means_own_data(data_file, tmp_path):
    """--set data.format / data.train_path describe one's own dataset (the embedded one is not
    built; DataConfig's defaults fill the rest); other data.* keys patch the embedded default."""
    from passt_lib.train_config import TrainConfig, apply_sets

    d = json.loads(data_file.read_text())["data"]
    sets = [f"data.format={d['format']}", f"data.train_path={d['train_path']}",
            f"data.eval_path={d['eval_path']}", "data.n_classes=4", "data.clip_seconds=1.0"]
    cfg = TrainConfig.from_dict(apply_sets({"model": "passt-s", "scale": "smoke"}, sets))
    assert cfg.data == DataConfig(format="panns-hdf5", train_path=d["train_path"],
                                  eval_path=d["eval_path"], n_classes=4, clip_seconds=1.0)
    assert cfg.data_overrides == {}
    patch = TrainConfig.from_dict(apply_sets({"model": "passt-s"}, ["data.wave_mixup=0"]))
    assert patch.data is None and patch.data_overrides == {"wave_mixup": 0.0}
    # end to end: no config file, only --set data.*; the autouse fixture refuses a build
    out = tmp_path / "own"
    argv = ["train", "--preset", "passt-s", "--scale", "smoke", "--out", str(out),
            "--no-progress", "--set", "batch_size=8", "--set", "epochs=1"]
    for s in sets:
        argv += ["--set", s]
    assert cli.main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["n_train"] == 16
