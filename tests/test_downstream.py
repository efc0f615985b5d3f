"""Downstream recipes: readers of every ESC-50 / OpenMIC / FSD50K layout, masked labels,
the released-weights cache, smoke fine-tunes and the fold runner."""

from __future__ import annotations

import csv
import json
import urllib.error

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from test_data_readers import tone, write_passt

from passt_lib import metrics as M
from passt_lib.cli import main as cli_main
from passt_lib.data import DataConfig, make_datasets, make_test_dataset
from passt_lib.data.augment import spec_mixup, wave_mixup
from passt_lib.finetune import parse_folds, run_folds
from passt_lib.labels import masked_bce, split_targets
from passt_lib.recipes import DEFAULT_WEIGHTS, RECIPES, recipe_config, scaled_augmentation
from passt_lib.released import released
from passt_lib.released_cache import released_weights

SR = 32000


def _wav(path, freq, seconds=0.5, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(freq, seconds, sr=sr), sr)


# --------------------------------------------------------------------------------------------
# Tiny datasets in every layout
# --------------------------------------------------------------------------------------------
def write_esc50(root, n_classes=5, folds=5, per=1, audio="audio", sr=44100):
    """ESC-50's download: meta/esc50.csv + audio/*.wav at 44.1 kHz (or audio_32k/)."""
    rows = []
    for fold in range(1, folds + 1):
        for c in range(n_classes):
            for k in range(per):
                name = f"{fold}-{c:03d}-{k}.wav"
                _wav(root / audio / name, 300 * (c + 1), sr=sr)
                rows.append({"filename": name, "fold": fold, "target": c,
                             "category": f"class{c}", "esc10": "False",
                             "src_file": name[:-4], "take": "A"})
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def openmic_targets(n, rng):
    y = rng.random((n, 20)).astype(np.float32)  # soft labels
    mask = rng.random((n, 20)) < 0.4
    mask[:, :2] = True  # every clip labelled for two instruments
    return y, mask


def write_openmic_hdf5(root, n=8, seed=0):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        y, mask = openmic_targets(n, rng)
        path = root / f"openmic_{split}.csv_mp3.hdf"
        write_passt(path, [tone(200 + 50 * i, 0.5) for i in range(n)],
                    np.zeros((n, 40)), packed=False)
        with h5py.File(path, "a") as f:
            del f["target"]
            f["target"] = np.concatenate([y, mask.astype(np.float32)], axis=1)
    return root


def write_openmic_npz(root, n=12, seed=0):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    keys = [f"{i:03d}_{i * 7:05d}" for i in range(n)]
    y, mask = openmic_targets(n, rng)
    np.savez(root / "openmic-2018.npz", X=np.zeros((n, 10, 128), np.float32), Y_true=y,
             Y_mask=mask, sample_key=np.array(keys))
    (root / "partitions").mkdir(parents=True)
    (root / "partitions" / "split01_train.csv").write_text("\n".join(keys[: n - 4]) + "\n")
    (root / "partitions" / "split01_test.csv").write_text("\n".join(keys[n - 4:]) + "\n")
    for i, k in enumerate(keys):
        p = root / "audio" / k[:3] / f"{k}.ogg"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, np.stack([tone(300 + 40 * i, 0.5)] * 2, axis=1), SR, format="OGG")
    (root / "class-map.json").write_text(json.dumps({f"inst{c}": c for c in range(20)}))
    return root, y, mask, keys


def fsd_targets(n, rng, c=200):
    t = np.zeros((n, c), bool)
    for i in range(n):
        t[i, rng.choice(6, size=rng.integers(1, 3), replace=False)] = True
        t[i, 150 + i % 50] = True
    return t


def write_fsd50k_hdf5(root, n=8, seed=0):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "eval"):
        write_passt(root / f"FSD50K.{split}_mp3.hdf",
                    [tone(200 + 30 * i, 0.25 + 0.5 * (i % 3)) for i in range(n)],
                    fsd_targets(n, rng))
    return root


def write_fsd50k_csv(root, n=6, seed=0):
    rng = np.random.default_rng(seed)
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True)
    names = [f"Sound_{c}" for c in range(200)]
    (gt / "vocabulary.csv").write_text("".join(f"{c},{names[c]},/m/{c:04d}\n"
                                               for c in range(200)))
    out = {}
    for split, csv_name, folder in (("dev", "dev.csv", "FSD50K.dev_audio"),
                                    ("eval", "eval.csv", "FSD50K.eval_audio")):
        t = fsd_targets(2 * n if split == "dev" else n, rng)
        lines = ["fname,labels,mids" + (",split" if split == "dev" else "")]
        for i, row in enumerate(t):
            fname = f"{split}{i}"
            labels = ",".join(names[c] for c in np.flatnonzero(row))
            mids = ",".join(f"/m/{c:04d}" for c in np.flatnonzero(row))
            extra = f",{'train' if i % 2 == 0 else 'val'}" if split == "dev" else ""
            lines.append(f'{fname},"{labels}","{mids}"{extra}')
            _wav(root / folder / f"{fname}.wav", 250 + 20 * i, seconds=0.3 + 0.4 * (i % 2))
        (gt / csv_name).write_text("\n".join(lines) + "\n")
        out[split] = t
    return root, out


@pytest.fixture(scope="module")
def released_cache(tmp_path_factory):
    """Random reference (hear21passt) weights of passt_s_swa_p16_128_ap476 at width 64, in a
    cache folder under the release file's name."""
    from hear21passt.models.passt import PaSST as RefPaSST

    a = released(DEFAULT_WEIGHTS)
    cache = tmp_path_factory.mktemp("released")
    torch.manual_seed(0)
    ref = RefPaSST(img_size=(a.input_fdim, a.input_tdim), stride=(a.fstride, a.tstride),
                   distilled=True, embed_dim=64, depth=1, num_heads=1, num_classes=527)
    torch.save({"state_dict": {f"net.{k}": v for k, v in ref.state_dict().items()}},
               cache / a.asset.rsplit("/", 1)[1])
    return cache


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("audio, sr", [("audio", 44100), ("audio_32k", 32000)])
def test_esc50_reader_resamples_and_splits_by_fold(tmp_path, audio, sr):
    root = write_esc50(tmp_path / "ESC-50", audio=audio, sr=sr)
    cfg = DataConfig(format="esc50", train_path=str(root), n_classes=50, task="singlelabel",
                     clip_seconds=0.5, fold=3)
    train, ev = make_datasets(cfg)
    assert (len(train), len(ev)) == (20, 5)
    wave, target, name = ev[2]
    assert wave.shape == (16000,) and int(target) == 2 and name == "3-002-0.wav"
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) / 0.5 - 900) < 4  # the 900 Hz tone survived resampling
    assert train.targets().shape == (20, 50)


def test_esc50_layout_errors_name_what_is_missing(tmp_path):
    root = write_esc50(tmp_path / "ESC-50")
    cfg = DataConfig(format="esc50", train_path=str(root), n_classes=50, task="singlelabel",
                     fold=1)
    (root / "audio").rename(root / "elsewhere")
    with pytest.raises(FileNotFoundError, match="audio/ is missing"):
        make_datasets(cfg)
    (root / "meta" / "esc50.csv").unlink()
    with pytest.raises(FileNotFoundError, match="meta/esc50.csv is missing"):
        make_datasets(cfg)


def test_folder_csv_with_a_fold_column(tmp_path):
    rows = ["filename,labels,fold"]
    for i in range(10):
        _wav(tmp_path / f"c{i}.wav", 300 + 100 * (i % 2))
        rows.append(f"c{i}.wav,{'dog' if i % 2 else 'cat'},{i % 5 + 1}")
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    cfg = DataConfig(format="folder", train_path=str(tmp_path / "all.csv"), clip_seconds=0.5,
                     fold=2)
    train, ev = make_datasets(cfg)
    assert (len(train), len(ev)) == (8, 2) and ev[0][2] == "c1.wav"
    with pytest.raises(ValueError, match="no fold column 'split'"):
        make_datasets(cfg.replace(fold_column="split"))


def test_openmic_hdf5_and_npz_give_labels_then_masks(tmp_path):
    hdf = write_openmic_hdf5(tmp_path / "h")
    cfg = DataConfig(format="passt-hdf5", train_path=str(hdf / "openmic_train.csv_mp3.hdf"),
                     eval_path=str(hdf / "openmic_test.csv_mp3.hdf"), n_classes=20,
                     label_mask=True, clip_seconds=0.5)
    train, _ = make_datasets(cfg)
    assert train[0][1].shape == (40,)
    root, y, mask, keys = write_openmic_npz(tmp_path / "openmic-2018")
    cfg = DataConfig(format="openmic-npz", train_path=f"{root}#train", eval_path=f"{root}#test",
                     n_classes=20, label_mask=True, clip_seconds=0.5)
    train, ev = make_datasets(cfg)
    assert (len(train), len(ev)) == (8, 4)
    wave, target, name = ev[1]
    assert wave.shape == (16000,) and name == f"{keys[9]}.ogg"  # stereo downmixed
    assert torch.equal(target, torch.from_numpy(np.r_[y[9], mask[9].astype(np.float32)]))
    with pytest.raises(ValueError, match="ROOT#SPLIT"):
        make_datasets(cfg.replace(train_path=str(root)))
    (root / "partitions" / "split01_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="partitions/split01_test.csv is missing"):
        make_datasets(cfg)


def test_fsd50k_hdf5_and_csv_layouts(tmp_path):
    root = write_fsd50k_hdf5(tmp_path / "h")
    cfg = DataConfig(format="passt-hdf5", train_path=str(root / "FSD50K.train_mp3.hdf"),
                     eval_path=str(root / "FSD50K.val_mp3.hdf"),
                     test_path=str(root / "FSD50K.eval_mp3.hdf"), n_classes=200,
                     clip_seconds=0.5)
    train, _ = make_datasets(cfg)
    assert train[1][0].shape == (16000,) and train.targets().shape == (8, 200)
    root, t = write_fsd50k_csv(tmp_path / "FSD50K")
    cfg = DataConfig(format="fsd50k", train_path=f"{root}#train", eval_path=f"{root}#val",
                     test_path=f"{root}#eval", n_classes=200, clip_seconds=0.5)
    train, val = make_datasets(cfg)
    test = make_test_dataset(cfg)
    assert (len(train), len(val), len(test)) == (6, 6, 6)
    assert np.array_equal(train.targets() > 0, t["dev"][0::2])
    assert np.array_equal(test.targets() > 0, t["eval"])
    assert train[0][0].shape == (16000,)  # 0.3 s zero-padded
    (root / "FSD50K.eval_audio").rename(root / "x")
    with pytest.raises(FileNotFoundError, match="FSD50K.eval_audio/ is missing"):
        make_test_dataset(cfg)


# --------------------------------------------------------------------------------------------
# Masked labels: loss, gradients, mixup and metrics are blind to what a mask hides
# --------------------------------------------------------------------------------------------
def _masked_batch(seed=0, b=6, c=5):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(b, c, generator=g) > 0.5).float()
    mask = (torch.rand(b, c, generator=g) > 0.4).float()
    mask[0] = 1.0
    return y, mask


def test_masked_loss_and_gradients_ignore_unlabelled_pairs():
    y, mask = _masked_batch()
    logits = torch.randn(6, 5, requires_grad=True)
    other = torch.where(mask > 0, y, torch.rand_like(y) * 7 - 3)  # anything behind the mask
    grads, losses = [], []
    for labels in (y, other, torch.where(mask > 0, y, torch.full_like(y, float("nan")))):
        logits.grad = None
        loss = masked_bce(logits, torch.cat([labels, mask], 1), 5)
        loss.backward()
        losses.append(loss.detach())
        grads.append(logits.grad.clone())
    assert torch.equal(losses[0], losses[1]) and torch.equal(losses[0], losses[2])
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])
    assert (grads[0][mask == 0] == 0).all() and (grads[0][mask > 0] != 0).all()
    # averaged over the labelled pairs: the mean BCE of those pairs
    per = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    assert torch.allclose(losses[0], per[mask > 0].mean())


def test_mixup_mixes_labels_and_multiplies_masks():
    y, mask = _masked_batch(1)
    target = torch.cat([y, mask], 1)
    hidden = torch.cat([torch.where(mask > 0, y, torch.full_like(y, 5.0)), mask], 1)
    wave = torch.randn(6, 100)
    outs = []
    for t in (target, hidden):
        g = torch.Generator().manual_seed(3)
        w, mixed = wave_mixup(wave, t, fraction=1.0, generator=g, masked=True)
        g = torch.Generator().manual_seed(4)
        _, mixed2 = spec_mixup(w, mixed, 0.3, g, masked=True)
        outs.append(mixed2)
    assert torch.equal(outs[0], outs[1])
    lab, m = split_targets(outs[0], 5)
    assert set(m.unique().tolist()) <= {0.0, 1.0} and m.sum() < mask.sum()
    assert (lab[m == 0] == 0).all()


def test_masked_ap_and_auc_match_sklearn_sample_weight():
    rng = np.random.default_rng(0)
    n, c = 40, 6
    scores = rng.random((n, c))
    scores[:10, 0] = 0.5  # ties
    y = rng.random((n, c)) < 0.4
    mask = rng.random((n, c)) < 0.7
    y[0], mask[0] = True, True
    ap = [average_precision_score(y[:, k], scores[:, k], sample_weight=mask[:, k])
          for k in range(c)]
    auc = [roc_auc_score(y[:, k], scores[:, k], sample_weight=mask[:, k]) for k in range(c)]
    assert M.mean_average_precision(scores, y, mask) == pytest.approx(np.mean(ap), abs=1e-12)
    assert M.mean_roc_auc(scores, y, mask) == pytest.approx(np.mean(auc), abs=1e-12)
    # and values behind the mask (labels and scores) change nothing
    y2 = np.where(mask, y, ~y)
    s2 = np.where(mask, scores, rng.random((n, c)))
    assert M.multilabel_metrics(s2, y2, mask) == M.multilabel_metrics(scores, y, mask)
    assert M.mean_average_precision(scores, y) != M.mean_average_precision(scores, y, mask)


# --------------------------------------------------------------------------------------------
# Released weights: cache, download once, offline error
# --------------------------------------------------------------------------------------------
def test_released_weights_download_once_then_cached(tmp_path):
    calls = []

    def fake(url, dest):
        calls.append(url)
        dest.write_bytes(b"weights")

    p = released_weights(DEFAULT_WEIGHTS, tmp_path, download=fake)
    assert p.read_bytes() == b"weights" and p.name == "passt-s-f128-p16-s10-ap.476-swa.pt"
    assert calls == [released(DEFAULT_WEIGHTS).url]
    assert released_weights(DEFAULT_WEIGHTS, tmp_path, download=fake) == p and len(calls) == 1


def test_released_weights_offline_names_the_file_and_where_to_put_it(tmp_path):
    def offline(url, dest):
        dest.write_bytes(b"half")
        raise urllib.error.URLError("no network")

    with pytest.raises(FileNotFoundError, match=r"download passt-s-f128-p16-s10-ap\.476-swa\.pt "
                                                r"from https://github.com/kkoutini/PaSST/.*put it at"):
        released_weights(DEFAULT_WEIGHTS, tmp_path, download=offline)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_finetune_without_weights_offline_is_one_line(tmp_path, monkeypatch, capsys):
    def offline(url, dest):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("PASST_STUDY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("passt_lib.released_cache.urlopen_download", offline)
    root = write_esc50(tmp_path / "ESC-50", n_classes=2, folds=5)
    rc = cli_main(["finetune", "esc50", "--data", str(root), "--scale", "smoke"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "passt-s-f128-p16-s10-ap.476-swa.pt" in err and str(tmp_path / "cache") in err


# --------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------
def test_recipes_hold_the_authors_settings(released_cache, tmp_path):
    r = RECIPES["esc50"]
    assert (r.epochs, r.batch_size, r.lr, r.patchout, r.specaugment) == \
        (10, 12, 1e-5, (10, 3), (48, 80))
    assert (RECIPES["openmic"].patchout, RECIPES["fsd50k"].epochs) == ((40, 4), 50)
    root = write_esc50(tmp_path / "ESC-50", n_classes=2)
    cfg = recipe_config("esc50", root, scale="paper", cache=released_cache)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.swa_start_epoch) == (10, 12, 1e-5, 3)
    assert cfg.init_arch == DEFAULT_WEIGHTS and cfg.data.clip_seconds == 5.0
    assert cfg.model_overrides["s_patchout_t"] == 10 and cfg.model_overrides["embed_dim"] == 64
    assert cfg.mel_overrides == {"freqm": 48, "timem": 80}
    small = recipe_config("esc50", root, scale="smoke", cache=released_cache,
                          sets=["lr=3e-4", "init_arch=passt_s_swa_p16_128_ap476"])
    assert small.lr == 3e-4 and small.data.clip_seconds == 1.0
    assert small.model_overrides["s_patchout_t"] == 2  # 10 of 49 time patches -> 2 of 9
    with pytest.raises(FileNotFoundError, match="none of the fsd50k layouts"):
        recipe_config("fsd50k", root, cache=released_cache)
    with pytest.raises(ValueError, match="unknown recipe 'esc'"):
        recipe_config("esc", root)


def test_scaled_augmentation_keeps_proportions():
    patchout, masks = scaled_augmentation(RECIPES["openmic"], 10.0, 128, (10, 10))
    assert patchout["s_patchout_t"] == 40 and masks == {"freqm": 48, "timem": 192}
    patchout, masks = scaled_augmentation(RECIPES["openmic"], 2.0, 64, (10, 10))
    assert patchout["s_patchout_t"] == 8 and masks["freqm"] == 24


@pytest.mark.parametrize("name, writer", [
    ("openmic", lambda p: write_openmic_npz(p)[0]),
    ("fsd50k", lambda p: write_fsd50k_hdf5(p)),
])
def test_smoke_finetune_from_released_architecture(name, writer, released_cache, tmp_path,
                                                   monkeypatch, capsys):
    monkeypatch.setenv("PASST_STUDY_CACHE", str(released_cache))
    root = writer(tmp_path / name)
    out = tmp_path / "out"
    rc = cli_main(["finetune", name, "--data", str(root), "--scale", "smoke", "--out", str(out),
                   "--no-progress", "--set", "threads=1", "--set", "epochs=2",
                   "--set", "data.num_workers=0", "--whole-clips"])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["config_hash"] and 0 <= m["eval_map"] <= 1 and "swa_eval_map" in m
    if name == "fsd50k":
        assert m["selected_epoch"] in (1, 2) and "selected_test_map" in m
        assert "validation set" in m["selection"] and "selection:" in stdout
    whole = json.loads((out / "whole_clips.json").read_text())
    split = "test" if name == "fsd50k" else "eval"
    assert 0 <= whole[f"whole_{split}_map"] <= 1 and "whole clips:" in stdout


def test_full_waveform_is_the_whole_clip(tmp_path):
    """Training crops a 2.5 s clip to 1 s; the whole-clip evaluation reads all of it."""
    from passt_lib.data.readers import PasstHDF5Dataset

    path = write_passt(tmp_path / "long.hdf", [tone(440, 2.5)], np.ones((1, 3), bool))
    ds = PasstHDF5Dataset(path, sample_rate=SR, clip_seconds=1.0, n_classes=3)
    assert ds[0][0].shape == (SR,) and ds.full_waveform(0).shape[0] >= int(2.5 * SR)


def test_esc50_folds_run_resume_and_average(released_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PASST_STUDY_CACHE", str(released_cache))
    root = write_esc50(tmp_path / "ESC-50", n_classes=4, folds=5, per=2)
    out = tmp_path / "folds"
    sets = ["threads=1", "progress=false", "data.num_workers=0", "epochs=2"]
    # a run killed in fold 2 after its first epoch
    run_folds("esc50", root, [1], out, scale="smoke", sets=sets)
    with pytest.raises(RuntimeError, match="fold 2 stopped early"):
        run_folds("esc50", root, [2], out, scale="smoke", sets=sets + ["stop_after_epoch=1"])
    done_1 = (out / "fold-1" / "metrics.json").stat().st_mtime_ns
    summary = run_folds("esc50", root, parse_folds("1-5"), out, scale="smoke", sets=sets)
    assert (out / "fold-1" / "metrics.json").stat().st_mtime_ns == done_1  # skipped: done
    history = (out / "fold-2" / "train" / "history.csv").read_text().splitlines()
    assert len(history) == 3  # fold 2 resumed after its first epoch: header + 2 epochs
    accs = [summary["folds"][str(k)]["eval_accuracy"] for k in range(1, 6)]
    assert summary["eval_accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["eval_accuracy"]["sd"] == pytest.approx(np.std(accs, ddof=1))
    assert "swa_eval_accuracy" in summary
    assert json.loads((out / "folds.json").read_text()) == summary


def test_parse_folds():
    assert parse_folds("1-5") == [1, 2, 3, 4, 5] and parse_folds("2,4") == [2, 4]
    with pytest.raises(ValueError, match="--folds expects"):
        parse_folds("one")
