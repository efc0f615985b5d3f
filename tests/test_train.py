"""The training loop: learning rate, config and CLI, outputs, determinism, resume, phases.

Training runs use the smoke scale on a tiny PANNs-layout HDF5 file written here
(tones per class over noise), so they take about a second each.
"""

import csv
import dataclasses
import json
import math

import h5py
import numpy as np
import pytest
import torch
from tones import SR, tiny_config

from passt_lib import train as T
from passt_lib.checkpoints import load_checkpoint
from passt_lib.data.config import DataConfig
from passt_lib.lr import epoch_plan, lr_at, lr_segments
from passt_lib.phases import parse_schedule
from passt_lib.train_config import apply_sets


# -- learning rate ---------------------------------------------------------------------------
def test_lr_warms_up_peaks_and_decays_linearly():
    total, warm, base = 100, 10, 1e-3
    lrs = [lr_at(s, total, warm, base, 0.01) for s in range(130)]
    assert all(a < b for a, b in zip(lrs[:warm], lrs[1:warm]))  # rising during warm-up
    assert lrs[warm - 1] == pytest.approx(base) and lrs[warm] == pytest.approx(base)
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:]))  # never rising after
    assert lrs[total] == pytest.approx(base * 0.01) and lrs[-1] == pytest.approx(base * 0.01)
    mid = warm + (total - warm) // 2
    assert lrs[mid] == pytest.approx(base * (1 - 0.99 * 0.5))  # linear
    assert min(lrs) > 0
    assert lr_at(0, 5, 0, base) == base  # no warm-up starts at the peak
    with pytest.raises(ValueError, match="total_steps"):
        lr_at(0, 0, 0, base)


def test_lr_segments_restart_or_continue():
    assert lr_segments(parse_schedule("pool:4x2,full:3")) == [(0, 0, 2), (1, 0, 3)]
    assert lr_segments(parse_schedule("pool:4x2,full:3:keep-lr")) == [(0, 0, 5), (0, 2, 5)]


# -- config and command line ---------------------------------------------------------------
def test_config_takes_the_scale_budget_and_rejects_unknown_keys():
    from passt_lib.scales import get_scale

    c = T.TrainConfig.for_scale("passt-s", "embedded")
    s = get_scale("embedded")
    assert (c.epochs, c.batch_size, c.lr, c.warmup_epochs) == (s.epochs, s.batch_size, s.lr,
                                                              s.warmup_epochs)
    assert T.TrainConfig.for_scale("passt-s", "embedded", lr=0.5).lr == 0.5
    assert T.TrainConfig.for_scale("passt-s", schedule="pool:4x2,full:3").epochs == 5
    with pytest.raises(ValueError, match=r"unknown TrainConfig keys \['lrr'\].*valid keys"):
        T.TrainConfig.for_scale("passt-s", lrr=1.0)
    with pytest.raises(ValueError, match="schedule"):
        T.TrainConfig.for_scale("passt-s", epochs=3, schedule="pool:4x2,full:3")
    with pytest.raises(ValueError, match="unknown scale"):
        T.TrainConfig.for_scale("passt-s", "huge")
    assert T.TrainConfig.from_dict(c.to_dict()) == c


def test_set_parses_by_field_type():
    d = apply_sets({"model": "passt-s"}, [
        "lr=5e-4", "warmup_epochs=0", "progress=false", "schedule=pool:2x1,full:1", "stop_after_epoch=none",
        "data.gain_db=0", "data.balanced=no", "model_overrides.s_patchout_t=2"])
    assert d["lr"] == 5e-4 and d["warmup_epochs"] == 0.0 and d["progress"] is False
    assert d["schedule"] == "pool:2x1,full:1" and d["stop_after_epoch"] is None
    assert d["data_overrides"] == {"gain_db": 0.0, "balanced": False}
    assert d["model_overrides"] == {"s_patchout_t": 2}
    assert T.TrainConfig.from_dict(d).epochs == 2  # the schedule's total
    with pytest.raises(ValueError, match="expected an int"):
        apply_sets({}, ["epochs=two"])
    with pytest.raises(ValueError, match=r"unknown key 'lrate'.*valid keys: model, scale"):
        apply_sets({}, ["lrate=1"])
    with pytest.raises(ValueError, match="unknown data field 'gain'"):
        apply_sets({}, ["data.gain=1"])
    with pytest.raises(ValueError, match="key=value"):
        apply_sets({}, ["lr"])


def test_cli_reports_bad_set_and_missing_preset(capsys, tmp_path):
    assert T.main(["--preset", "passt-s", "--out", str(tmp_path), "--set", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'bogus'" in err and "batch_size" in err
    with pytest.raises(SystemExit):
        T.main(["--out", str(tmp_path)])


# -- training runs ---------------------------------------------------------------------------
def test_train_writes_outputs_and_beats_nothing(tiny_data, tmp_path):
    res = T.train(tiny_config(tiny_data, tmp_path))
    assert res.completed
    m = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("eval_map", "eval_auc", "eval_dprime", "prior_map", "train_seconds", "epochs",
                "preset", "samples_per_s", "tokens", "phases", "peak_memory_mb"):
        assert key in m, key
    assert m["epochs"] == 2 and m["preset"] == "passt-s" and m["n_eval"] == 12
    assert 0 < m["prior_map"] < 1 and 0 < m["eval_map"] <= 1
    assert m["samples_per_s"] > 0 and m["train_seconds"] > 0
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"phase", "lr", "train_loss", "eval_map", "train_seconds"} <= set(rows[0])
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert T.TrainConfig.from_dict(ckpt["config"]) == tiny_config(tiny_data, tmp_path)
    assert ckpt["epoch"] == 2 and {"model", "optimizer", "rng", "history"} <= set(ckpt)
    model_sd = res.model.state_dict()
    assert all(torch.equal(v, model_sd[k]) for k, v in ckpt["model"].items())
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def _trajectory(res):
    return [(r["train_loss"], r["eval_map"], r["lr"]) for r in res.history]


def test_deterministic_and_resume_equals_uninterrupted(tiny_data, tmp_path):
    full = T.train(tiny_config(tiny_data, tmp_path / "a"))
    again = T.train(tiny_config(tiny_data, tmp_path / "b"))
    assert _trajectory(full) == _trajectory(again)
    other = T.train(tiny_config(tiny_data, tmp_path / "c", seed=1, epochs=1))
    assert _trajectory(other)[0] != _trajectory(full)[0]

    part = T.train(tiny_config(tiny_data, tmp_path / "d", stop_after_epoch=1))
    assert not part.completed and len(part.history) == 1
    assert not (tmp_path / "d" / "metrics.json").exists()  # metrics.json means "finished"
    resumed = T.train(tiny_config(tiny_data, tmp_path / "d", resume=True))
    assert resumed.completed
    assert _trajectory(resumed) == _trajectory(full)
    assert resumed.metrics["eval_map"] == full.metrics["eval_map"]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    with pytest.raises(ValueError, match="different config.*lr"):
        T.train(tiny_config(tiny_data, tmp_path / "d", resume=True, lr=0.1))


def test_coarse_to_fine_phases_and_resume_across_a_phase(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "a", epochs=None, schedule="pool:2x1,full:1")
    full = T.train(cfg)
    phases = full.metrics["phases"]
    assert [p["method"] for p in phases] == ["pool", "full"]
    assert phases[0]["tokens"] < phases[1]["tokens"]
    assert all(p["train_seconds"] > 0 and "eval_map" in p for p in phases)
    assert [r["method"] for r in full.history] == ["pool", "full"]
    T.train(cfg.replace(out_dir=str(tmp_path / "b"), stop_after_epoch=1))
    resumed = T.train(cfg.replace(out_dir=str(tmp_path / "b"), resume=True))
    assert _trajectory(resumed) == _trajectory(full)


def test_epoch_plan_and_lr_segments_in_steps():
    phases = parse_schedule("pool:2x5steps,full:1")
    assert epoch_plan(phases, 2) == [[2, 2, 1], [2]]
    assert epoch_plan(parse_schedule("pool:2x4steps,full:2"), 2) == [[2, 2], [2, 2]]
    assert lr_segments(phases, 2) == [(0, 0, 5), (1, 0, 2)]
    assert lr_segments(parse_schedule("pool:2x5steps,full:1:keep-lr"), 2) == \
        [(0, 0, 7), (0, 5, 7)]


def test_phase_given_in_steps_trains_exactly_those_steps_and_resumes(tiny_data, tmp_path):
    """16 clips at batch 8 are 2 steps an epoch: 3 steps of pool are 2 passes (2 + 1 steps)."""
    cfg = tiny_config(tiny_data, tmp_path / "a", epochs=None, schedule="pool:2x3steps,full:1")
    assert cfg.epochs is None  # the epochs depend on the data
    with pytest.raises(ValueError, match="length in steps; leave epochs unset"):
        tiny_config(tiny_data, tmp_path, epochs=4, schedule="pool:2x3steps,full:1")
    full = T.train(cfg)
    phases = full.metrics["phases"]
    assert [(p["steps"], p["epochs"], p["train_samples"]) for p in phases] == \
        [(3, 2, 24), (2, 1, 16)]
    assert [r["phase"] for r in full.history] == [0, 0, 1] and full.metrics["epochs"] == 3
    assert full.metrics["train_samples"] == 40
    # whole epochs given as steps train exactly as the same epochs
    as_steps = T.train(cfg.replace(out_dir=str(tmp_path / "c"), schedule="pool:2x4steps,full:1"))
    as_epochs = T.train(cfg.replace(out_dir=str(tmp_path / "d"), schedule="pool:2x2,full:1"))
    assert _trajectory(as_steps) == _trajectory(as_epochs)
    T.train(cfg.replace(out_dir=str(tmp_path / "b"), stop_after_epoch=2))  # after the short pass
    resumed = T.train(cfg.replace(out_dir=str(tmp_path / "b"), resume=True))
    assert _trajectory(resumed) == _trajectory(full)


def test_single_label_task_reports_accuracy(tiny_data, tmp_path):
    data = tiny_data.replace(task="singlelabel", spec_mixup_alpha=0.0)
    res = T.train(tiny_config(data, tmp_path, epochs=1))
    assert 0 <= res.metrics["eval_accuracy"] <= 1 and "prior_accuracy" in res.metrics
    assert "eval_map" not in res.metrics


def test_cli_trains_from_a_config_file(tiny_data, tmp_path, capsys):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"model": "passt-s", "scale": "smoke",
                               "data": tiny_data.to_dict(), "progress": False}))
    out = tmp_path / "out"
    assert T.main([str(cfg), "--out", str(out), "--set", "epochs=1", "--set", "batch_size=8"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 1 and m["preset"] == "passt-s" and "eval_map" in m
    assert "prior_map" in capsys.readouterr().out


def test_front_end_takes_the_scale_masks_and_overrides(tiny_data):
    from passt_lib.models import create_model
    from passt_lib.scales import get_scale

    cfg = T.TrainConfig.for_scale("passt-s", "smoke", data=tiny_data)
    model = create_model(cfg.model, cfg.scale, 4)
    mel = T.base_mel_config(model, cfg, tiny_data)
    s = get_scale("smoke")
    assert (mel.n_mels, mel.freqm, mel.timem) == (s.n_mels, s.freqm, s.timem)
    mel = T.base_mel_config(model, cfg.replace(mel_overrides={"timem": 0}), tiny_data)
    assert mel.timem == 0 and mel.freqm == s.freqm
    with pytest.raises(ValueError, match="8000 Hz"):
        T.base_mel_config(model, cfg, tiny_data.replace(sample_rate=8000))


def test_train_is_a_function_of_a_plain_train_module(tmp_path):
    import types

    import passt_lib
    from passt_lib.train import train

    assert type(passt_lib.train) is types.ModuleType  # no module-class trick
    assert passt_lib.train.train is train and "train" not in passt_lib.__all__
    with pytest.raises(ValueError, match="unknown scale"):
        train(T.TrainConfig(scale="nope", out_dir=str(tmp_path)))


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_skipped_entries_reach_metrics(tmp_path, caplog, num_workers):
    """A corrupt clip under on_error="skip" is counted in metrics.json and reported, never silent;
    under the default policy training stops with an error naming the file and entry."""
    import io

    import soundfile as sf

    rng = np.random.default_rng(0)
    n, n_classes = 12, 3

    def mp3(i):
        buf = io.BytesIO()
        sf.write(buf, (0.3 * np.sin(np.arange(SR) * (i + 1) * 0.05)).astype(np.float32), SR,
                 format="MP3")
        return np.frombuffer(buf.getvalue(), np.uint8)

    def write(path, bad):
        with h5py.File(path, "w") as f:
            f["audio_name"] = np.array([f"c{i}".encode() for i in range(n)], dtype="S8")
            d = f.create_dataset("mp3", shape=(n,), dtype=h5py.vlen_dtype(np.uint8))
            for i in range(n):
                d[i] = np.frombuffer(b"garbage" * 40, np.uint8) if i in bad else mp3(i)
            f["target"] = np.packbits(rng.random((n, n_classes)) < 0.5, axis=1)
        return str(path)

    data = DataConfig(format="passt-hdf5", train_path=write(tmp_path / "tr.hdf", {3, 7}),
                      eval_path=write(tmp_path / "ev.hdf", {5}), n_classes=n_classes,
                      clip_seconds=1.0, name="corrupt", cache=False, num_workers=num_workers)
    if num_workers == 0:  # (with workers, the loader's teardown after the error is noisy)
        with pytest.raises(ValueError, match=r"tr\.hdf.*3|3.*tr\.hdf"):
            T.train(tiny_config(data, tmp_path / "raise", epochs=1))
    skip = dataclasses.replace(data, on_error="skip")
    with caplog.at_level("WARNING"):
        T.train(tiny_config(skip, tmp_path / "skip", epochs=1))
    metrics = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert metrics["skipped"] == {"train": 2, "eval": 1}
    assert "skipped 2 of 12" in caplog.text and "skipped 1 of 12" in caplog.text


@pytest.mark.parametrize("name", ["cnn6", "mn04"])
def test_cnn_baselines_train_through_the_same_loop(tiny_data, tmp_path, name):
    """The CNN baselines use the same train(config) as PaSST: mel in, logits out."""
    cfg = T.TrainConfig.for_scale(name, "smoke", data=tiny_data, out_dir=str(tmp_path),
                                  epochs=1, batch_size=8, progress=False, threads=1)
    res = T.train(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["preset"] == name and m["epochs"] == 1 and 0.0 <= m["eval_map"] <= 1.0
    assert m["params"] == sum(p.numel() for p in res.model.parameters())
    assert res.model.n_classes == 4 and m["tokens"] is None
