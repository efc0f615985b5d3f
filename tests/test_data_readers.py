"""Readers: PaSST mp3 HDF5, PANNs waveform HDF5, folder + CSV; resampling, pad/crop, errors."""

import io

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from passt_lib.data import DataConfig, make_datasets, make_test_dataset
from passt_lib.data.readers import PannsHDF5Dataset, PasstHDF5Dataset, fit_length

SR = 32000


def tone(freq, seconds, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def mp3_bytes(x, sr=SR):
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="MP3")
    return buf.getvalue()


def write_passt(path, clips, targets, names=None, sr=SR, packed=True):
    n = len(clips)
    names = names or [f"clip{i}" for i in range(n)]
    with h5py.File(path, "w") as f:
        f.create_dataset("audio_name", data=np.array([s.encode() for s in names], dtype="S20"))
        d = f.create_dataset("mp3", shape=(n,), dtype=h5py.vlen_dtype(np.uint8))
        for i, c in enumerate(clips):
            d[i] = np.frombuffer(c if isinstance(c, bytes) else mp3_bytes(c, sr), np.uint8)
        t = np.asarray(targets, bool)
        f.create_dataset("target", data=np.packbits(t, axis=1) if packed else t.astype(np.float32))
    return path


def write_class_csv(path, names):
    path.write_text("index,mid,display_name\n" + "".join(
        f"{i},/m/{i},{n}\n" for i, n in enumerate(names)))
    return path


C = 11  # not a multiple of 8: exercises packbits' count


@pytest.fixture
def passt_file(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.random((4, C)) < 0.3
    targets[:, 0] = True
    clips = [tone(220 * (i + 1), 0.5) for i in range(4)]
    return write_passt(tmp_path / "train_mp3.hdf", clips, targets), targets


def test_passt_reader_targets_names_length(passt_file):
    path, targets = passt_file
    ds = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=1.0, n_classes=C)
    assert len(ds) == 4
    for i in range(4):
        wave, target, name = ds[i]
        assert wave.dtype == torch.float32 and wave.shape == (SR,)
        assert target.dtype == torch.float32 and target.shape == (C,)
        np.testing.assert_array_equal(target.numpy(), targets[i].astype(np.float32))
        assert name == f"clip{i}"
        # 0.5 s of tone, then zero padding up to 1 s
        assert wave[: SR // 4].abs().max() > 0.3
        assert wave[int(0.6 * SR):].abs().max() < 1e-3


def test_passt_reader_decodes_the_tone(passt_file):
    path, _ = passt_file
    ds = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=0.5, n_classes=C)
    wave = ds[1][0].numpy()  # 440 Hz
    spec = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spec) * SR / len(wave) - 440) < 5


def test_crop_and_float_targets(tmp_path):
    targets = np.eye(3, dtype=bool)
    path = write_passt(tmp_path / "f.hdf", [tone(300, 2.0)] * 3, targets, packed=False)
    ds = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=0.25, n_classes=3)
    wave, target, _ = ds[2]
    assert wave.shape == (SR // 4,)
    np.testing.assert_array_equal(target.numpy(), [0, 0, 1])


def test_fit_length():
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 3), [0, 1, 2])
    np.testing.assert_array_equal(fit_length(x, 7), [0, 1, 2, 3, 4, 0, 0])


def test_resampling_keeps_frequency_and_length(tmp_path):
    sr_in = 16000
    path = write_passt(tmp_path / "r.hdf", [tone(1000, 1.0, sr=sr_in)], [[1, 0]], sr=sr_in)
    ds = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=1.0, n_classes=2)
    wave = ds[0][0].numpy()
    assert wave.shape == (SR,)
    spec = np.abs(np.fft.rfft(wave[: SR // 2]))
    assert abs(np.argmax(spec) * SR / (SR // 2) - 1000) < 5


def test_panns_reader(tmp_path):
    sr_in = 16000
    x = tone(500, 1.0, sr=sr_in)
    path = tmp_path / "panns.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("audio_name", data=np.array([b"a", b"b"], dtype="S20"))
        f.create_dataset("waveform", data=np.stack([x, -x]) * 32767, dtype=np.int16)
        f.create_dataset("target", data=np.array([[1, 0, 0], [0, 1, 1]], bool))
        f.attrs["sample_rate"] = sr_in
    ds = PannsHDF5Dataset(path, sample_rate=SR, clip_seconds=1.5, n_classes=3)
    wave, target, name = ds[1]
    assert wave.shape == (int(1.5 * SR),) and name == "b"
    np.testing.assert_array_equal(target.numpy(), [0, 1, 1])
    spec = np.abs(np.fft.rfft(wave[:SR]))
    assert abs(np.argmax(spec) - 500) < 5  # 1 s window: bin = Hz
    assert abs(wave[:SR].abs().max().item() - 0.5) < 0.02  # int16 scaling undone


def test_folder_reader_with_class_csv_and_singlelabel(tmp_path):
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "x.wav", tone(200, 0.3, sr=22050), 22050)
    sf.write(tmp_path / "y.flac", tone(400, 0.3), SR)
    (tmp_path / "train.csv").write_text("filename,labels\na/x.wav,Dog;Cat\ny.flac,Bird\n")
    (tmp_path / "eval.csv").write_text("filename,labels\ny.flac,Cat\n")
    cls = write_class_csv(tmp_path / "classes.csv", ["Bird", "Cat", "Dog"])
    cfg = DataConfig(format="folder", train_path=str(tmp_path / "train.csv"),
                     eval_path=str(tmp_path / "eval.csv"), class_csv=str(cls),
                     clip_seconds=0.5)
    train, evaluation = make_datasets(cfg)
    wave, target, name = train[0]
    assert wave.shape == (SR // 2,) and name == "a/x.wav"
    np.testing.assert_array_equal(target.numpy(), [0, 1, 1])
    np.testing.assert_array_equal(evaluation[0][1].numpy(), [0, 1, 0])
    # no class CSV: classes are the sorted labels of the train CSV(s), shared with eval
    train2, eval2 = make_datasets(cfg.replace(class_csv=None))
    assert train2.classes == ["Bird", "Cat", "Dog"] and eval2.classes == train2.classes
    single = make_datasets(cfg.replace(task="singlelabel"))[0]
    assert single[1][1].dtype == torch.int64 and single[1][1].item() == 0


def test_folder_unknown_label_is_an_error(tmp_path):
    sf.write(tmp_path / "y.wav", tone(400, 0.3), SR)
    (tmp_path / "t.csv").write_text("filename,labels\ny.wav,Horse\n")
    cls = write_class_csv(tmp_path / "c.csv", ["Bird"])
    cfg = DataConfig(format="folder", train_path=str(tmp_path / "t.csv"),
                     eval_path=str(tmp_path / "t.csv"), class_csv=str(cls))
    with pytest.raises(ValueError, match="Horse"):
        make_datasets(cfg)


def test_bad_entry_raises_with_file_and_index(tmp_path):
    clips = [tone(300, 0.5), b"this is not audio at all" * 10, tone(500, 0.5)]
    path = write_passt(tmp_path / "bad.hdf", clips, np.eye(3, dtype=bool))
    ds = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=0.5, n_classes=3)
    ds[0]
    with pytest.raises(ValueError, match=r"bad\.hdf entry 1"):
        ds[1]


@pytest.mark.parametrize("cache", [False, True])
def test_bad_entry_skip_counts_and_reports(tmp_path, cache, caplog):
    clips = [tone(300, 0.5), b"garbage" * 30, tone(500, 0.5)]
    path = write_passt(tmp_path / "bad.hdf", clips, np.eye(3, dtype=bool))
    ds = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=0.5, n_classes=3, on_error="skip",
                          cache=cache)
    wave, target, name = ds[1]
    assert name == "clip2"  # replaced by the next readable entry
    assert list(ds.skipped) == [1]
    assert "1 of 3" in ds.skip_report() and "entry 1" in ds.skip_report()
    assert any("entry 1" in r.message for r in caplog.records)
    assert list(ds.scan()) == [1]


def test_missing_file_names_path_and_how_to_get_it(tmp_path):
    cfg = DataConfig(train_path=str(tmp_path / "nope_mp3.hdf"), eval_path=str(tmp_path / "e.hdf"),
                     n_classes=3)
    with pytest.raises(FileNotFoundError, match=r"nope_mp3\.hdf.*passt-study data build"):
        make_datasets(cfg)


def test_decoded_cache_matches_and_is_reused(passt_file):
    path, _ = passt_file
    kw = dict(sample_rate=SR, clip_seconds=1.0, n_classes=C)
    plain = PasstHDF5Dataset(path, **kw)
    cached = PasstHDF5Dataset(path, cache=True, **kw)
    for i in range(4):
        assert torch.allclose(plain[i][0], cached[i][0], atol=1 / 32767)
    assert cached.cache_path().exists()
    again = PasstHDF5Dataset(path, cache=True, **kw)
    waves, targets, names = again.stacked()
    assert waves.shape == (4, SR) and targets.shape == (4, C) and names[3] == "clip3"
    assert torch.allclose(waves[2], plain[2][0], atol=1 / 32767)
    assert torch.equal(targets[1], plain[1][1])


def test_stacked_skips_bad_entries(tmp_path):
    clips = [tone(300, 0.5), b"garbage" * 30, tone(500, 0.5)]
    path = write_passt(tmp_path / "bad.hdf", clips, np.eye(3, dtype=bool))
    ds = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=0.5, n_classes=3, on_error="skip",
                          cache=True, task="singlelabel")
    waves, targets, names = ds.stacked()
    assert names == ["clip0", "clip2"] and targets.tolist() == [0, 2] and list(ds.skipped) == [1]
    strict = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=0.5, n_classes=3, cache=True)
    with pytest.raises(ValueError, match="entry 1"):
        strict.stacked()


def test_concatenated_train_files_and_test_path(tmp_path):
    a = write_passt(tmp_path / "a.hdf", [tone(300, 0.2)] * 2, [[1, 0], [0, 1]])
    b = write_passt(tmp_path / "b.hdf", [tone(300, 0.2)] * 3, [[1, 1]] * 3)
    cfg = DataConfig(train_path=(str(a), str(b)), eval_path=str(b), test_path=str(a),
                     n_classes=2, clip_seconds=0.2)
    train, evaluation = make_datasets(cfg)
    assert len(train) == 5 and len(evaluation) == 3
    assert train.targets().shape == (5, 2)
    assert len(make_test_dataset(cfg)) == 2


def test_dataconfig_errors_and_audioset_preset(tmp_path):
    with pytest.raises(ValueError, match="format"):
        DataConfig(format="wav")
    with pytest.raises(ValueError, match="unknown DataConfig keys"):
        DataConfig.from_dict({"train_path": "x", "bogus": 1})
    cfg = DataConfig.audioset(tmp_path, train="full")
    assert cfg.n_classes == 527 and cfg.train_paths[0].endswith("balanced_train_segments_mp3.hdf")
    assert cfg.train_paths[1].endswith("unbalanced_train_segments_mp3.hdf")
    assert cfg.eval_path.endswith("eval_segments_mp3.hdf")
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
