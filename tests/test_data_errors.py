"""Error policy of the PANNs waveform HDF5 and folder + CSV readers.

A corrupt or unreadable entry raises ValueError naming the file and the index; under
``on_error="skip"`` it is replaced by the next readable entry, counted in
``dataset.skipped`` and listed by ``skip_report()``. Files are written here, in tmp_path.
"""

import logging

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from passt_lib.data import DataConfig, make_datasets
from passt_lib.data.readers import FolderDataset, PannsHDF5Dataset

SR = 32000
N_SAMPLES = SR // 4  # 0.25 s clips keep everything fast


def tone(freq, n=N_SAMPLES, sr=SR, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def write_panns(path, waves, targets, names=None, sr=SR):
    """A PANNs-layout HDF5 file; ``waves`` int16 or float32 (N, S)."""
    names = names or [f"clip{i}" for i in range(len(targets))]
    with h5py.File(path, "w") as f:
        f.create_dataset("audio_name", data=np.array([s.encode() for s in names], dtype="S20"))
        f.create_dataset("waveform", data=np.asarray(waves))
        f.create_dataset("target", data=np.asarray(targets, bool))
        f.attrs["sample_rate"] = sr
    return path


def panns_kw(**kw):
    return dict(sample_rate=SR, clip_seconds=N_SAMPLES / SR, n_classes=3, **kw)


@pytest.fixture
def panns_nan(tmp_path):
    """Float waveforms; entry 1 holds a NaN (non-finite samples are an error)."""
    waves = np.stack([tone(300), tone(400), tone(500)])
    waves[1, 100] = np.nan
    return write_panns(tmp_path / "nan_panns.h5", waves, np.eye(3, dtype=bool))


# -- PANNs waveform HDF5 --------------------------------------------------------------------
@pytest.mark.parametrize("cache", [False, True])
def test_panns_non_finite_entry_raises_naming_file_and_index(panns_nan, cache):
    ds = PannsHDF5Dataset(panns_nan, **panns_kw(cache=cache))
    if not cache:  # (the cache decodes everything at the first access)
        assert ds[0][2] == "clip0" and ds[2][2] == "clip2"
    with pytest.raises(ValueError) as info:
        ds[1]
    msg = str(info.value)
    assert "nan_panns.h5" in msg and "entry 1" in msg and "non-finite" in msg
    assert not ds.skipped


@pytest.mark.parametrize("cache", [False, True])
def test_panns_non_finite_entry_is_skipped_counted_and_reported(panns_nan, cache, caplog):
    ds = PannsHDF5Dataset(panns_nan, **panns_kw(cache=cache, on_error="skip"))
    with caplog.at_level(logging.WARNING, logger="passt_lib.data"):
        wave, target, name = ds[1]
    assert name == "clip2"  # replaced by the next readable entry
    np.testing.assert_array_equal(target.numpy(), [0, 0, 1])
    assert torch.isfinite(wave).all() and wave.shape == (N_SAMPLES,)
    assert list(ds.skipped) == [1] and "nan_panns.h5" in ds.skipped[1]
    report = ds.skip_report()
    assert "nan_panns.h5" in report and "1 of 3" in report and "entry 1" in report
    assert any("entry 1" in r.getMessage() for r in caplog.records)
    assert ds[0][2] == "clip0" and list(ds.skipped) == [1]  # good entries are unaffected


def test_panns_skip_through_dataconfig(panns_nan):
    cfg = DataConfig(format="panns-hdf5", train_path=str(panns_nan), eval_path=str(panns_nan),
                     n_classes=3, clip_seconds=N_SAMPLES / SR, on_error="skip")
    train, _ = make_datasets(cfg)
    names = [train[i][2] for i in range(len(train))]
    assert names == ["clip0", "clip2", "clip2"]
    assert "entry 1" in train.skip_report() and "1 of 3" in train.skip_report()
    strict, _ = make_datasets(cfg.replace(on_error="raise"))
    with pytest.raises(ValueError, match=r"nan_panns\.h5 entry 1"):
        strict[1]


def test_panns_scan_finds_the_bad_entry(panns_nan):
    skip = PannsHDF5Dataset(panns_nan, **panns_kw(on_error="skip"))
    bad = skip.scan()
    assert list(bad) == [1] and "entry 1" in bad[1] and list(skip.skipped) == [1]
    with pytest.raises(ValueError, match="entry 1"):
        PannsHDF5Dataset(panns_nan, **panns_kw()).scan()


def test_panns_singlelabel_row_without_a_class(tmp_path):
    waves = (np.stack([tone(300)] * 3) * 32767).astype(np.int16)
    targets = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]], bool)
    path = write_panns(tmp_path / "nolabel.h5", waves, targets)
    ds = PannsHDF5Dataset(path, **panns_kw(task="singlelabel"))
    assert ds[0][1].item() == 0
    with pytest.raises(ValueError, match=r"nolabel\.h5 entry 1.*no positive class"):
        ds[1]
    skip = PannsHDF5Dataset(path, **panns_kw(task="singlelabel", on_error="skip"))
    assert skip[1][2] == "clip2" and skip[1][1].item() == 1
    assert list(skip.skipped) == [1] and "entry 1" in skip.skip_report()


@pytest.fixture
def panns_short(tmp_path):
    """Three names and targets but only two waveform rows: entry 2 is missing."""
    waves = (np.stack([tone(300), tone(400)]) * 32767).astype(np.int16)
    return write_panns(tmp_path / "short_panns.h5", waves, np.eye(3, dtype=bool))


def test_panns_missing_waveform_row_raises_value_error(panns_short):
    with pytest.raises(ValueError, match=r"short_panns\.h5.*\b2\b"):
        ds = PannsHDF5Dataset(panns_short, **panns_kw())
        ds[2]


def test_panns_missing_waveform_row_is_skipped(panns_short):
    ds = PannsHDF5Dataset(panns_short, **panns_kw(on_error="skip"))
    assert ds[2][2] == "clip0"  # wraps around to the next readable entry
    assert list(ds.skipped) == [2] and "entry 2" in ds.skip_report()


# -- folder + CSV ---------------------------------------------------------------------------
@pytest.fixture
def folder_csv(tmp_path):
    """Rows: 0 good, 1 missing file, 2 good, 3 garbage bytes with a .wav name."""
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "good0.wav", tone(300), SR)
    sf.write(tmp_path / "clips" / "good2.flac", tone(500), SR)
    (tmp_path / "clips" / "garbage.wav").write_bytes(b"\x00\x17not a wave file at all" * 20)
    (tmp_path / "labels.csv").write_text(
        "filename,labels\nclips/good0.wav,Bird\nclips/missing.wav,Cat\n"
        "clips/good2.flac,Dog\nclips/garbage.wav,Cat\n")
    return tmp_path / "labels.csv"


def folder_kw(**kw):
    return dict(classes=["Bird", "Cat", "Dog"], sample_rate=SR, clip_seconds=N_SAMPLES / SR, **kw)


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("index, audio", [(1, "missing.wav"), (3, "garbage.wav")])
def test_folder_bad_entry_raises_naming_file_and_index(folder_csv, cache, index, audio):
    ds = FolderDataset(folder_csv, **folder_kw(cache=cache))
    if not cache:
        assert ds[0][2] == "clips/good0.wav" and ds[2][2] == "clips/good2.flac"
    with pytest.raises(ValueError) as info:
        ds[index]
    msg = str(info.value)
    # the cache decodes everything at the first access and stops at the first bad entry
    first_bad, first_audio = (1, "missing.wav") if cache else (index, audio)
    assert "labels.csv" in msg and f"entry {first_bad}" in msg and first_audio in msg
    assert not ds.skipped


@pytest.mark.parametrize("cache", [False, True])
def test_folder_bad_entries_are_skipped_counted_and_reported(folder_csv, cache, caplog):
    ds = FolderDataset(folder_csv, **folder_kw(cache=cache, on_error="skip"))
    with caplog.at_level(logging.WARNING, logger="passt_lib.data"):
        assert ds[1][2] == "clips/good2.flac"  # the next readable entry
        assert ds[3][2] == "clips/good0.wav"  # wraps around
    assert sorted(ds.skipped) == [1, 3]
    assert "missing.wav" in ds.skipped[1] and "garbage.wav" in ds.skipped[3]
    report = ds.skip_report()
    assert "labels.csv" in report and "2 of 4" in report
    assert "missing.wav" in report and "garbage.wav" in report
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 2
    np.testing.assert_array_equal(ds[2][1].numpy(), [0, 0, 1])


def test_folder_stacked_leaves_bad_entries_out(folder_csv):
    ds = FolderDataset(folder_csv, **folder_kw(cache=True, on_error="skip"))
    waves, targets, names = ds.stacked()
    assert names == ["clips/good0.wav", "clips/good2.flac"] and waves.shape == (2, N_SAMPLES)
    np.testing.assert_array_equal(targets.numpy(), [[1, 0, 0], [0, 0, 1]])
    assert sorted(ds.skipped) == [1, 3]
    assert not ds.cache_path().exists()  # never write a sidecar with holes in it


def test_folder_skip_through_dataconfig(folder_csv):
    cfg = DataConfig(format="folder", train_path=str(folder_csv), eval_path=str(folder_csv),
                     clip_seconds=N_SAMPLES / SR, on_error="skip")
    train, _ = make_datasets(cfg)
    assert [train[i][2] for i in range(4)] == ["clips/good0.wav", "clips/good2.flac",
                                               "clips/good2.flac", "clips/good0.wav"]
    assert "2 of 4" in train.skip_report()
    strict, _ = make_datasets(cfg.replace(on_error="raise"))
    with pytest.raises(ValueError, match=r"labels\.csv entry 1 .*missing\.wav"):
        strict[1]


def test_folder_all_entries_bad_is_an_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"junk" * 50)
    (tmp_path / "t.csv").write_text("filename,labels\nnope.wav,A\nbad.wav,A\n")
    ds = FolderDataset(tmp_path / "t.csv", classes=["A"], sample_rate=SR,
                       clip_seconds=N_SAMPLES / SR, on_error="skip")
    with pytest.raises(ValueError, match=r"no readable entry.*t\.csv"):
        ds[0]
    assert sorted(ds.skipped) == [0, 1]
