"""Every bad input is refused by name (or, where the input is legitimate, reported), and a
diverged run never writes metrics. Each test gives the bad input and checks the error type
and the words a user needs: the value, what was expected, the file."""

import io
import json
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch
from tones import tiny_config

from passt_lib import cli
from passt_lib import train as T
from passt_lib.data.config import DataConfig
from passt_lib.data.readers import FolderDataset, PannsHDF5Dataset, PasstHDF5Dataset
from passt_lib.errors import TrainingDiverged
from passt_lib.model import PaSSTConfig
from passt_lib.models import create_model

SR = 32000


def tiny_passt(**kw):
    return create_model("passt-s", "smoke", 3, size="tiny", depth=1, **kw).eval()


# -------------------------------------------------------------------- training that diverges
def test_infinite_learning_rate_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(ValueError, match="lr must be a finite number; got inf"):
        T.TrainConfig.for_scale("passt-s", "smoke", lr=float("inf"))
    assert cli.main(["train", "--preset", "passt-s", "--scale", "smoke", "--out",
                     str(tmp_path), "--set", "lr=inf"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lr must be a finite number" in err


def test_a_diverged_run_stops_keeps_the_last_good_checkpoint_and_writes_no_metrics(
        tiny_data, tmp_path, monkeypatch):  # noqa: F811
    """16 clips at batch 8: 2 steps an epoch; the loss of step 3 (epoch 2) is NaN."""
    calls = []
    step = T.Step.__call__

    def nan_at_step_3(self, *a, **k):
        loss = step(self, *a, **k)
        calls.append(1)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(T.Step, "__call__", nan_at_step_3)
    with pytest.raises(TrainingDiverged, match=r"at step 3 \(epoch 2, step 1 of 2\) with "
                                               r"learning rate [0-9.e-]+.*after epoch 1"):
        T.train(tiny_config(tiny_data, tmp_path, epochs=3))
    assert not (tmp_path / "metrics.json").exists()
    from passt_lib.checkpoints import load_checkpoint

    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1  # the last good one


# -------------------------------------------------------------------- spectrograms to a model
def test_nan_spectrogram_is_refused_where_user_input_enters():
    from passt_lib.evaluate import predict

    m = tiny_passt()
    mel = torch.randn(3, 64, 101)
    mel[1, 5, 7] = float("nan")
    mel[2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"1 NaN and 1 infinite values \(batch items \[1, 2\]\)"):
        m.predict_long(mel)
    with pytest.raises(ValueError, match="NaN"):
        predict(m, mel, torch.nn.Identity(), 2, "fp32", torch.device("cpu"))


@pytest.mark.parametrize("frames", [0, 10])
def test_too_few_frames_name_the_count_and_the_minimum(frames):
    with pytest.raises(ValueError, match=f"got {frames} frames, fewer than one patch: the model "
                                         "needs at least 16 frames"):
        tiny_passt()(torch.randn(2, 64, frames))


def test_float64_spectrogram_is_accepted_and_non_float_is_named():
    m = tiny_passt()
    mel = torch.randn(2, 64, 101)
    with torch.no_grad():
        assert torch.allclose(m(mel.double()), m(mel))
    with pytest.raises(ValueError, match="floating-point mel spectrogram.*torch.int64"):
        m(torch.zeros(2, 64, 101, dtype=torch.int64))


def test_hop_longer_than_the_window_and_stride_larger_than_the_patch():
    m = tiny_passt()
    with pytest.raises(ValueError, match=r"hop must be in \[1, 100\] frames.*got 150"):
        m.predict_long(torch.randn(1, 64, 400), hop_frames=150)
    with pytest.raises(ValueError, match=r"stride \(10, 20\) is larger than the patch \(16, 16\)"):
        PaSSTConfig(tstride=20)


def test_negative_patchout_names_the_field_and_value():
    with pytest.raises(ValueError, match="s_patchout_f must be an integer >= 0.*got -1"):
        PaSSTConfig(s_patchout_f=-1)
    with pytest.raises(ValueError, match="u_patchout must be an integer >= 0.*got -3"):
        PaSSTConfig.preset("passt-u", u_patchout=-3)


# -------------------------------------------------------------------- waveforms
def test_a_waveform_far_above_one_warns_once_with_the_peak_and_the_fix():
    from passt_lib import frontend

    frontend._warned_peak = False
    fe = frontend.MelFrontend(n_mels=64).eval()
    pcm = torch.randn(1, SR) * 3000  # int16 PCM cast to float without scaling
    with pytest.warns(UserWarning, match=r"peak 1\.[0-9]+e\+04 is far above 1.*wave / 32768"):
        fe(pcm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fe(pcm)  # once per process
        frontend._warned_peak = False
        fe(torch.randn(1, SR).clamp(-2.2, 2.2))  # our own gain augmentation's range: no warning


# -------------------------------------------------------------------- data files
def _mp3(seconds=1.0):
    buf = io.BytesIO()
    t = np.arange(int(SR * seconds)) / SR
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR, format="MP3")
    return buf.getvalue()


def _passt_h5(path, entries, target):
    with h5py.File(path, "w") as f:
        f["audio_name"] = np.array([f"c{i}".encode() for i in range(len(entries))], dtype="S8")
        d = f.create_dataset("mp3", shape=(len(entries),), dtype=h5py.vlen_dtype(np.uint8))
        for i, b in enumerate(entries):
            d[i] = np.frombuffer(b, np.uint8)
        f["target"] = target
    return str(path)


def test_truncated_mp3_entry_is_an_entry_error_but_a_short_clip_is_padded(tmp_path):
    full, short = _mp3(1.0), _mp3(0.6)  # a clip shorter than 1 s is legitimate
    cut = full[: int(0.29 * len(full))]  # a stream cut short: its header still says 1 s
    target = np.packbits(np.eye(3, 4, dtype=bool), axis=1)
    path = _passt_h5(tmp_path / "a.hdf", [full, short, cut], target)
    kw = dict(sample_rate=SR, clip_seconds=1.0, n_classes=4)
    ds = PasstHDF5Dataset(path, **kw)
    assert ds[0][0].shape == ds[1][0].shape == (SR,) and ds[1][0][-1000:].abs().max() == 0
    with pytest.raises(ValueError, match=r"a\.hdf entry 2.*truncated audio: decodes to \d+ "
                                         r"samples but its header announces 32000"):
        ds[2]
    skip = PasstHDF5Dataset(path, on_error="skip", **kw)
    assert skip.scan() == {2: skip.skipped[2]} and skip.n_skipped == 1


def test_packed_targets_need_the_number_of_classes_they_were_packed_from(tmp_path):
    hot = np.zeros((2, 20), bool)
    hot[0, 3] = hot[1, 17] = True
    path = _passt_h5(tmp_path / "p.hdf", [_mp3(), _mp3()], np.packbits(hot, axis=1))
    with pytest.raises(ValueError, match="packed bits.*set n_classes"):
        PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=1.0, n_classes=0)
    with pytest.raises(ValueError, match="class indices up to 17 but the config says "
                                         "n_classes=17.*at least 18 classes"):
        PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=1.0, n_classes=17)
    ok = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=1.0, n_classes=20)
    assert ok.targets()[1, 17] == 1 and ok.targets().shape == (2, 20)


def test_a_file_that_is_not_hdf5_says_so_with_its_path(tmp_path):
    path = tmp_path / "clips.hdf"
    path.write_bytes(b"ID3 not an hdf5 file" * 10)
    for reader in (PasstHDF5Dataset, PannsHDF5Dataset):
        with pytest.raises(ValueError, match=f"{path} is not an HDF5 file"):
            reader(path, sample_rate=SR, clip_seconds=1.0, n_classes=3)


def test_folder_dataset_without_a_labels_csv_or_without_rows(tmp_path):
    (tmp_path / "clips").mkdir()
    with pytest.raises(ValueError, match="is a folder, not a file"):
        FolderDataset(tmp_path / "clips", sample_rate=SR, clip_seconds=1.0)
    (tmp_path / "labels.csv").write_text("filename,labels\n")
    with pytest.raises(ValueError, match="has a header but no rows: add one row per audio file"):
        FolderDataset(tmp_path / "labels.csv", sample_rate=SR, clip_seconds=1.0)
    (tmp_path / "labels.csv").write_text("file,label\nclips/a.wav,Dog\n")
    with pytest.raises(ValueError, match="needs a header with columns 'filename' and 'labels'"):
        FolderDataset(tmp_path / "labels.csv", sample_rate=SR, clip_seconds=1.0)


# -------------------------------------------------------------------- checkpoints and configs
@pytest.mark.parametrize("content", [b"", b"not a checkpoint" * 10, "half"])
def test_corrupt_checkpoints_are_named_in_the_api_and_on_the_command_line(
        content, tmp_path, tiny_data, capsys):  # noqa: F811
    from passt_lib.checkpoints import load_reference_checkpoint

    path = tmp_path / "checkpoint.pt"
    if content == "half":
        buf = io.BytesIO()
        torch.save({"model": {"w": torch.zeros(1000)}}, buf)
        content = buf.getvalue()[:2000]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}.*truncated or not a PyTorch checkpoint"):
        load_reference_checkpoint(path, fstride=10, tstride=10, input_tdim=998)
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"model": "passt-s", "scale": "smoke", "progress": False,
                               "data": tiny_data.to_dict(), "batch_size": 8}))
    assert cli.main(["train", str(cfg), "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "truncated" in err


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: passt-s\nscale: smoke\ndata: {format: passt-hdf5\n  lr: 1\n")
    assert cli.main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}, line 4" in err and "YAML syntax error" in err and err.count("\n") == 1
    study = tmp_path / "study.yaml"
    study.write_text("notebook: x.ipynb\ngrid: [a, b\n")
    assert cli.main(["run", str(study)]) == 2
    assert f"{study}, line" in capsys.readouterr().err


# -------------------------------------------------------------------- one line, or a traceback
def test_every_subcommand_reports_user_errors_in_one_line(tmp_path, capsys):
    bad = tmp_path / "nothing.hdf"
    bad.write_text("x")
    cases = [
        ["train", "--preset", "nope", "--out", str(tmp_path)],
        ["data", "info", str(bad)],
        ["data", "info", str(tmp_path / "missing.hdf")],
        ["run", str(tmp_path / "missing.yaml")],
        ["bench", "train", "--data", str(bad), "--out", str(tmp_path / "b.csv")],
    ]
    for argv in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"passt-study {argv[0]}") and err.count("\n") == 1, (argv, err)
        assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("PASST_STUDY_DEBUG", "0")  # off now, and unset again afterwards
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        cli.main(["--debug", "train", "--preset", "nope", "--out", str(tmp_path)])
    env = {**__import__("os").environ, "PASST_STUDY_DEBUG": "1"}
    out = subprocess.run([sys.executable, "-m", "passt_lib.train", "--preset", "nope", "--out",
                          str(tmp_path)], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "Traceback" in out.stderr and "unknown model" in out.stderr
    del env["PASST_STUDY_DEBUG"]
    out = subprocess.run([sys.executable, "-m", "passt_lib.train", "--preset", "nope", "--out",
                          str(tmp_path)], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_data_config_errors_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="num_workers must be an integer >= 0 or 'auto'; got -1"):
        DataConfig(num_workers=-1)


class _NotATensor:
    pass


def test_a_checkpoint_holding_objects_is_refused_with_the_fix(tmp_path):
    from passt_lib.checkpoints import load_reference_checkpoint

    path = tmp_path / "pickled.pt"
    torch.save({"model": _NotATensor(), "w": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="holds Python objects besides tensors.*state_dict"):
        load_reference_checkpoint(path, fstride=10, tstride=10, input_tdim=998)
