"""The embedded dataset builder: layout, determinism, held-out sources, caching."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from passt_lib.data import embedded, make_datasets, read_class_csv
from passt_lib.data import sources as S
from passt_lib.data.cli import main as data_main

SR = 32000


def fake_bank(seed=0):
    """split -> tag -> samples with synthetic audio; each split has its own sources."""
    rng = np.random.default_rng(seed)
    bank = {}
    for split in ("train", "eval"):
        bank[split] = {}
        for k, tag in enumerate(S.MIXTURE_TAGS):
            samples = []
            for src in range(2):
                n = int(rng.integers(SR // 10, SR // 2))
                t = np.arange(n) / SR
                x = np.sin(2 * np.pi * (100 + 40 * k) * t) * np.exp(-3 * t)
                samples.append(S.Sample(f"fake:{split}{src}:{tag}",
                                        np.round(x * 30000).astype(np.int16)))
            bank[split][tag] = samples
    return bank


def tiny_params(**kw):
    p = embedded.build_params("smoke", seed=kw.pop("seed", 0), n_train=12, n_eval=6, **kw)
    return p


def test_build_layout_and_reader(tmp_path):
    params = tiny_params()
    out = embedded.build(params, tmp_path / "ds", workers=1, progress=False, bank=fake_bank())
    assert (out / "COMPLETE").exists() and json.loads((out / "params.json").read_text()) == params
    assert "MIT" in (out / "SOURCES.txt").read_text()
    classes = read_class_csv(out / "class_labels_indices.csv")
    assert [c[2] for c in classes] == list(S.MIXTURE_TAGS) and 20 <= len(classes) <= 30
    with h5py.File(out / "train_mp3.hdf", "r") as f:
        assert f["audio_name"].dtype == np.dtype("S20")
        assert f["mp3"].dtype == h5py.vlen_dtype(np.uint8)
        assert f["target"].dtype == np.uint8 and f["target"].shape == (12, (len(classes) + 7) // 8)
        assert bytes(f["mp3"][0][:3]) in (b"ID3",) or f["mp3"][0][0] == 0xFF  # an mp3 stream
        hot = np.unpackbits(f["target"][()], axis=1, count=len(classes))
    assert ((hot.sum(1) >= 1) & (hot.sum(1) <= 4)).all()
    config = embedded._config_for(out, params)
    train, evaluation = make_datasets(config)
    wave, target, name = train[5]
    assert wave.shape == (int(SR * params["clip_seconds"]),) and target.shape == (len(classes),)
    assert name == "emb_tr_0000005" and len(evaluation) == 6
    np.testing.assert_array_equal(target.numpy(), hot[5])
    assert 0.05 < wave.abs().max() < 1.0


def test_build_is_deterministic_and_seed_dependent(tmp_path):
    bank = fake_bank()
    a = embedded.build(tiny_params(), tmp_path / "a", workers=1, progress=False, bank=bank)
    b = embedded.build(tiny_params(), tmp_path / "b", workers=2, progress=False, bank=bank)
    c = embedded.build(tiny_params(seed=1), tmp_path / "c", workers=1, progress=False, bank=bank)
    for split in ("train", "eval"):
        with h5py.File(a / f"{split}_mp3.hdf") as fa, h5py.File(b / f"{split}_mp3.hdf") as fb:
            assert fa["target"][()].tobytes() == fb["target"][()].tobytes()
            assert fa["audio_name"][()].tobytes() == fb["audio_name"][()].tobytes()
            assert all(bytes(x) == bytes(y) for x, y in zip(fa["mp3"], fb["mp3"]))
    with h5py.File(a / "train_mp3.hdf") as fa, h5py.File(c / "train_mp3.hdf") as fc:
        assert fa["target"][()].tobytes() != fc["target"][()].tobytes()


def test_eval_uses_only_eval_sources(tmp_path):
    out = embedded.build(tiny_params(), tmp_path / "ds", workers=1, progress=False,
                         bank=fake_bank())
    train = {s for clip in embedded.read_sources(out / "train_mp3.hdf") for s in clip}
    evaluation = {s for clip in embedded.read_sources(out / "eval_mp3.hdf") for s in clip}
    assert train and evaluation and not train & evaluation
    assert all(":train" in s for s in train) and all(":eval" in s for s in evaluation)


def test_real_source_split_holds_out_sources():
    fonts = list(S.find_soundfonts())
    if len(fonts) < 2 or not S.find_drumkits():
        pytest.skip("soundfont / hydrogen packages not installed")
    assert set(S.EVAL_KITS) <= set(S.find_drumkits()) and len(S.EVAL_KITS) >= 3
    train_v, eval_v = S.speech_voices("train"), S.speech_voices("eval")
    assert len(eval_v) >= 3 and not set(train_v) & set(eval_v)
    # every drum class appears in both the train kits and the held-out kits
    def classes(kits):
        return {c for k in kits for c in S.parse_drumkit(S.find_drumkits()[k])}
    train_kits = [k for k in S.find_drumkits() if k not in S.EVAL_KITS]
    assert classes(train_kits) == classes(S.EVAL_KITS) == set(S.DRUM_CLASSES)


def test_drum_class_rules():
    assert S.drum_class("Kick (Tama Superstar 22\")") == "kick"
    assert S.drum_class("Sabian Hat Semi-Open") == "open hi-hat"
    assert S.drum_class("Closed HH 1") == "closed hi-hat"
    assert S.drum_class("Hand Clap") == "clap"
    assert S.drum_class("Floor Tom") == "tom"
    assert S.drum_class("Djembe1 Slap") == "hand percussion"
    assert S.drum_class("Zap 1") is None


def test_midi_file_is_well_formed():
    data = S.midi_bytes([(0, 60, 100, 0.0, 1.0), (40, 64, 90, 1.5, 0.5)])
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00")


def test_ensure_caches_and_params_change_rebuilds(tmp_path, monkeypatch):
    calls = []
    real_build = embedded.build

    def fake_build(params, out, **kw):
        calls.append(params)
        kw["bank"] = fake_bank()
        kw["progress"] = False
        kw["workers"] = 1
        return real_build(params, out, **kw)

    monkeypatch.setattr(embedded, "build", fake_build)
    a = embedded.ensure("smoke", root=tmp_path, n_train=4, n_eval=2)
    b = embedded.ensure("smoke", root=tmp_path, n_train=4, n_eval=2)
    assert a == b and len(calls) == 1
    embedded.ensure("smoke", root=tmp_path, n_train=5, n_eval=2)
    assert len(calls) == 2
    embedded.ensure("smoke", root=tmp_path, n_train=4, n_eval=2, force=True)
    assert len(calls) == 3
    assert a.n_classes == len(S.MIXTURE_TAGS) and a.cache and a.task == "multilabel"
    with pytest.raises(ValueError, match="unknown embedded build parameters"):
        embedded.build_params("smoke", n_trian=3)
    with pytest.raises(ValueError, match="task"):
        embedded.build_params("smoke", task="music")
    assert not list(tmp_path.glob(".tmp-*"))
    assert data_main(["info", a.train_path]) == 0


@pytest.mark.slow
def test_real_tiny_build_from_packages(tmp_path):
    if S.missing_tools():
        pytest.skip(f"missing packages {S.missing_tools()}")
    # the source banks are a content-keyed cache: share the project's (built by `data build`)
    bank_dir = Path(__file__).resolve().parents[1] / "data" / "banks"
    cfg = embedded.ensure("smoke", root=tmp_path, n_train=8, n_eval=4, progress=False,
                          bank_dir=bank_dir)
    train, evaluation = make_datasets(cfg)
    wave, target, _ = train[0]
    assert target.sum() >= 1 and wave.abs().max() > 0.05
    srcs = {s.split(":")[1] for c in embedded.read_sources(cfg.eval_path) for s in c}
    assert srcs <= {"TimGM6mb", *S.EVAL_KITS, "espeak", "flite"}
    shutil.rmtree(tmp_path)


def test_keywords_task_is_single_label(tmp_path):
    rng = np.random.default_rng(0)
    bank = {split: {w: [S.Sample(f"voice:{split}", (rng.standard_normal(3000) * 8000)
                                 .astype(np.int16))] for w in S.DIGITS}
            for split in ("train", "eval")}
    params = embedded.build_params("smoke", task="keywords", n_train=10, n_eval=5)
    out = embedded.build(params, tmp_path / "kw", workers=1, progress=False, bank=bank)
    config = embedded._config_for(out, params)
    assert config.task == "singlelabel" and config.n_classes == 10
    train, evaluation = make_datasets(config)
    _, target, _ = train[0]
    assert target.dtype.is_floating_point is False and 0 <= int(target) < 10
    assert {s for c in embedded.read_sources(out / "eval_mp3.hdf") for s in c} == {"voice:eval"}


def test_every_command_finds_the_dataset_in_one_place(monkeypatch, tmp_path):
    """`passt-study data build`, training and the study all default to the checkout's data/."""
    from pathlib import Path

    import passt_lib
    from passt_lib.data import cli

    repo = Path(passt_lib.__file__).resolve().parents[1]
    assert embedded.default_root() == repo / "data"
    seen = {}

    def fake_ensure(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(embedded, "ensure", fake_ensure)
    monkeypatch.chdir(tmp_path)  # a relative "data" default would point here
    with pytest.raises(SystemExit):
        cli.main(["build", "--scale", "smoke"])
    assert seen["root"] is None  # ensure() then resolves default_root()
