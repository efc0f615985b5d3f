"""Trained models in use: self-describing checkpoints, predict, embeddings, fine-tuning.

A smoke-scale PaSST is trained once on tone files with a class CSV (so that its classes have
names); everything else runs on that checkpoint, on audio files the tests write, and on
random reference (hear21passt) weights of a released architecture at reduced width.
"""

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from reference import quiet
from tones import SR, write_tones

from passt_lib import cli
from passt_lib import train as T
from passt_lib.data.config import DataConfig
from passt_lib.inference import load_model

NAMES = ["low hum", "mid tone", "high tone", "whistle"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    (root / "classes.csv").write_text("index,mid,display_name\n" + "".join(
        f"{i},/t/{i},{n}\n" for i, n in enumerate(NAMES)))
    data = DataConfig(format="panns-hdf5", train_path=write_tones(root / "tr.h5", 16, seed=0),
                      eval_path=write_tones(root / "ev.h5", 12, seed=1), n_classes=4,
                      clip_seconds=1.0, class_csv=str(root / "classes.csv"))
    cfg = T.TrainConfig.for_scale("passt-s", "smoke", data=data, out_dir=str(root / "run"),
                                  epochs=2, batch_size=8, progress=False, threads=1)
    T.train(cfg)
    return root / "run" / "checkpoint.pt", cfg


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    files = {}
    for name, seconds, rate, channels in (("one", 1.0, SR, 1), ("long", 95.0, SR, 1),
                                          ("stereo", 3.5, 44100, 2)):
        x = 0.1 * rng.standard_normal((int(seconds * rate), channels)).astype(np.float32)
        files[name] = root / f"{name}.wav"
        sf.write(files[name], x, rate)
    files["text"] = root / "notes.wav"
    files["text"].write_text("this is not audio")
    return files


def test_checkpoints_describe_themselves(trained):
    path, cfg = trained
    m = load_model(path)
    assert not m.training and m.sample_rate == SR and m.classes == NAMES
    assert m.mids == [f"/t/{i}" for i in range(4)] and m.task == "multilabel"
    assert m.window_frames == 100 and m.window_seconds == pytest.approx(1.0)
    state = T.load_checkpoint(path)
    assert state["format"] == 3 and state["model_config"]["patch_size"] == (16, 16)
    assert state["config"] == cfg.to_dict() and state["mel_config"]["n_mels"] == 64
    wave = 0.1 * torch.randn(2, SR)
    with torch.no_grad():
        assert m(wave).shape == (2, 4)
    # a clip shorter than the window: its one window ends where the audio does, not a frame later
    short = m.predict(0.1 * torch.randn(int(0.422 * SR)))
    assert short.end_seconds.tolist() == [pytest.approx(0.422)]
    # the same weights as the trained model, from the file alone
    res_model = T.load_checkpoint(path)["model"]
    assert all(torch.equal(v, res_model[k]) for k, v in m.model.state_dict().items())


def test_load_model_names_what_disagrees_and_refuses_old_checkpoints(trained, tmp_path):
    path, _ = trained
    with pytest.raises(ValueError, match="sample_rate: the checkpoint has 32000, you expect "
                                         "16000; n_classes: the checkpoint has 4, you expect 527"):
        load_model(path, sample_rate=16000, n_classes=527)
    old = {k: v for k, v in T.load_checkpoint(path).items()
           if k not in ("format", "model_config", "classes", "mel_config", "task")}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format-1 checkpoint.*lacks model_config, mel_config, "
                                         "classes, task"):
        load_model(tmp_path / "old.pt")
    coarse = {**T.load_checkpoint(path), "phase_full": False}
    torch.save(coarse, tmp_path / "coarse.pt")
    with pytest.raises(ValueError, match="coarse phase.*--resume"):
        load_model(tmp_path / "coarse.pt")


def run_predict(argv, capsys):
    rc = cli.main(["predict", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_predict_tags_files_of_any_length_rate_and_channels(trained, audio_files, capsys):
    path, _ = trained
    files = [str(audio_files[k]) for k in ("one", "long", "stereo", "text")]
    rc, out, err = run_predict([str(path), *files, "--top-k", "2"], capsys)
    assert rc == 2  # one file could not be read; the others were still tagged
    assert f"{files[3]}:" in err and err.count("passt-study predict: error") == 1
    assert "downmixed from 2 channels" in err and "resampled from 44100 Hz" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    by_file = {f: [r for r in rows if r["file"] == f] for f in files[:3]}
    assert all(r["tag"] in NAMES and 0 <= float(r["probability"]) <= 1 for r in rows)
    one = by_file[files[0]]
    assert [r["scope"] for r in one] == ["clip_mean"] * 2 + ["clip_max"] * 2 + ["window"] * 2
    long_windows = {(r["start_s"], r["end_s"]) for r in by_file[files[1]] if r["scope"] == "window"}
    assert len(long_windows) == 377  # 1 s windows every 0.25 s over 95 s
    assert max(float(e) for _, e in long_windows) == pytest.approx(95.0)
    rc, out, _ = run_predict([str(path), files[2], "--format", "json", "--hop", "0.5"], capsys)
    result = json.loads(out)[0]
    assert rc == 0 and result["seconds"] == pytest.approx(3.5) and len(result["windows"]) == 6
    assert result["notes"] == ["downmixed from 2 channels", "resampled from 44100 Hz"]
    rc, _, err = run_predict([str(path), files[0], "--hop", "2"], capsys)
    assert rc == 2 and "hop must be in (0, 1] seconds" in err


@pytest.fixture(scope="module")
def reference_weights(tmp_path_factory):
    """Random hear21passt weights of a released stride-12 model at reduced width."""
    from hear21passt.models.passt import PaSST as RefPaSST

    root = tmp_path_factory.mktemp("ref")
    torch.manual_seed(0)
    with quiet():
        ref = RefPaSST(img_size=(128, 998), stride=(12, 12), distilled=True, embed_dim=64,
                       depth=1, num_heads=1, num_classes=527).eval()
    torch.save({"state_dict": {f"net.{k}": v for k, v in ref.state_dict().items()}},
               root / "ref.ckpt")
    (root / "audioset.csv").write_text("index,mid,display_name\n" + "".join(
        f'{i},/m/{i:04d},"Class {i}"\n' for i in range(527)))
    return root / "ref.ckpt", root / "audioset.csv"


def test_predict_with_released_weights_and_audioset_names(reference_weights, audio_files,
                                                          capsys):
    weights, names = reference_weights
    rc, out, err = run_predict([str(weights), str(audio_files["stereo"]), "--reference",
                                "passt_s_p16_s12_128_ap470", "--class-csv", str(names),
                                "--format", "json"], capsys)
    assert rc == 0 and "passt_s_p16_s12_128_ap470: 527 classes" in err
    top = json.loads(out)[0]["clip_mean"][0]
    assert top["tag"].startswith("Class ") and top["mid"].startswith("/m/")


def test_hear_embeddings_for_our_and_released_checkpoints(trained, reference_weights):
    from passt_lib import embeddings as E

    ours = E.load_model(str(trained[0]))
    ref = E.load_model(str(reference_weights[0]), arch="passt_s_p16_s12_128_ap470")
    for model, width, hop in ((ours, 192, 50), (ref, 64, 40)):  # strides 10 and 12
        assert model.sample_rate == SR and model.timestamp_hop_ms == hop
        assert model.scene_embedding_size == model.timestamp_embedding_size == width
        audio = 0.1 * torch.randn(2, int(2.5 * SR))
        scene = E.get_scene_embeddings(audio, model)
        emb, ts = E.get_timestamp_embeddings(audio, model)
        assert scene.shape == (2, width) and torch.isfinite(scene).all()
        assert emb.shape[:2] == ts.shape and emb.shape[2] == width and ts.shape[0] == 2
        assert torch.allclose(ts.diff(dim=1), torch.tensor(float(hop)))  # ms between them
        assert 0 <= ts[0, 0] <= hop and 2500 - hop <= ts[0, -1] <= 2500
    with pytest.raises(ValueError, match="NaN"):
        E.get_scene_embeddings(torch.full((1, SR), float("nan")), ours)


def test_fine_tuning_replaces_the_head_and_resamples_encodings(trained, reference_weights,
                                                               tmp_path):
    from passt_lib.checkpoints import initial_weights
    from passt_lib.models import create_model

    path, cfg = trained
    data = DataConfig(format="panns-hdf5", n_classes=3, clip_seconds=1.0, task="singlelabel",
                      train_path=write_tones(tmp_path / "tr.h5", 16, n_classes=3, seed=2),
                      eval_path=write_tones(tmp_path / "ev.h5", 12, n_classes=3, seed=3),
                      spec_mixup_alpha=0.0)
    res = T.train(cfg.replace(data=data.to_dict(), init=str(path), out_dir=str(tmp_path / "ft")))
    assert res.completed and "eval_accuracy" in res.metrics and res.model.n_classes == 3
    before = T.load_checkpoint(path)["model"]["blocks.0.attn.qkv.weight"]
    fresh = create_model("passt-s", "smoke", 3)
    notes = initial_weights(fresh, path)
    assert torch.equal(fresh.state_dict()["blocks.0.attn.qkv.weight"], before)
    assert notes == ["head replaced: 4 -> 3 classes (head.1.weight, head.1.bias)"]
    # released weights (128 x 998 at stride 12) into a 128 x 300-frame model: 83 -> 29 positions
    small = create_model("passt-s", "paper", 5, embed_dim=64, num_heads=1, depth=1, fstride=12,
                        tstride=12, input_tdim=300, s_patchout_t=0, s_patchout_f=0)
    notes = initial_weights(small, reference_weights[0], arch="passt_s_p16_s12_128_ap470")
    assert notes[0] == "encodings resampled from (10, 83) to (10, 24) positions"
    with pytest.raises(ValueError, match="do not fit the model.*fine-tuning keeps the width"):
        initial_weights(create_model("passt-s", "smoke", 3, size="small"), path)


# ------------------------------------------------------------ files that cannot run code
class RunsCode:
    """An object whose unpickling writes ``path``: what a malicious checkpoint holds."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('ran')",)


def test_no_load_path_runs_code_a_checkpoint_holds(trained, reference_weights, audio_files,
                                                    tmp_path, capsys):
    from passt_lib import embeddings
    from passt_lib.checkpoints import convert_checkpoint, initial_weights, load_reference_checkpoint
    from passt_lib.models import create_model

    path, cfg = trained
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "run" / "checkpoint.pt"
    evil.parent.mkdir()
    torch.save({**T.load_checkpoint(path), "note": RunsCode(marker)}, evil)
    refused = "holds Python objects besides tensors.*refused"
    loads = [lambda: T.load_checkpoint(evil), lambda: load_model(evil),
             lambda: embeddings.load_model(str(evil)),
             lambda: initial_weights(create_model("passt-s", "smoke", 4), evil),
             lambda: load_reference_checkpoint(evil, "passt_s_p16_s12_128_ap470"),
             lambda: T.train(cfg.replace(out_dir=str(evil.parent), resume=True))]
    for load in loads:
        with pytest.raises(ValueError, match=refused):
            load()
    for argv in (["predict", str(evil), str(audio_files["one"])],
                 ["export", str(evil), str(tmp_path / "out")],
                 ["convert-checkpoint", str(evil), str(tmp_path / "new.pt")]):
        assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("refused") == 2 and "only for a checkpoint you made" in err
    assert not marker.exists() and not (tmp_path / "new.pt").exists()
    # the control: unpickling it does run the code, which is why only --trust converts
    convert_checkpoint(evil, tmp_path / "new.pt", trust=True)
    assert marker.read_text() == "ran"


def test_older_checkpoints_convert_with_trust_and_then_load(trained, tmp_path, capsys):
    path, _ = trained
    state = T.load_checkpoint(path)
    name, keys, *rest = state["rng"]["numpy"]
    old = tmp_path / "old.pt"  # as earlier versions wrote it: NumPy's RNG state as an array
    torch.save({**state, "rng": {**state["rng"], "numpy": (name, keys.numpy().astype(np.uint32),
                                                           *rest)}}, old)
    with pytest.raises(ValueError, match=f"convert-checkpoint {old} NEW.pt --trust"):
        load_model(old)
    assert cli.main(["convert-checkpoint", str(old), str(tmp_path / "new.pt")]) == 2
    assert cli.main(["convert-checkpoint", str(old), str(tmp_path / "new.pt"), "--trust"]) == 0
    new = T.load_checkpoint(tmp_path / "new.pt")
    assert torch.equal(new["rng"]["numpy"][1], keys) and new["history"] == state["history"]
    wave = 0.1 * torch.randn(1, 3 * SR)
    assert torch.equal(load_model(tmp_path / "new.pt").predict(wave).window_logits,
                       load_model(path).predict(wave).window_logits)


def test_exported_folders_load_and_predict_as_the_checkpoint(trained, audio_files, tmp_path,
                                                            capsys):
    from passt_lib import embeddings

    path, _ = trained
    folder = tmp_path / "shared"
    assert cli.main(["export", str(path), str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    described = json.loads((folder / "model.json").read_text())
    assert described["classes"] == NAMES and described["model_name"] == "passt-s"
    a, b = load_model(path), load_model(folder, n_classes=4)
    assert a.window_frames == b.window_frames and a.frontend.config == b.frontend.config
    wave = 0.1 * torch.randn(2, int(2.3 * SR))
    assert torch.equal(a.predict(wave).window_logits, b.predict(wave).window_logits)
    assert torch.equal(embeddings.get_scene_embeddings(wave, embeddings.load_model(str(folder))),
                       embeddings.get_scene_embeddings(wave, embeddings.load_model(str(path))))
    capsys.readouterr()
    outs = [run_predict([str(p), str(audio_files["stereo"])], capsys)[1] for p in (path, folder)]
    assert outs[0] == outs[1] and outs[0].count("\n") > 10
    (folder / "model.json").unlink()
    with pytest.raises(ValueError, match="not an exported model: it has no model.json"):
        load_model(folder)


def test_a_format_2_cnn_checkpoint_with_flat_front_end_fields_loads(tmp_path):
    """Format 2 stored a CNN's front-end as flat config fields; format 3 as one ``mel``."""
    from types import SimpleNamespace

    from passt_lib.checkpoints import save_checkpoint
    from passt_lib.inference import describe
    from passt_lib.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn6", "smoke", 4)
    data = SimpleNamespace(sample_rate=SR, clip_seconds=1.0, task="multilabel")
    state = {"model": model.state_dict(), "phase_full": True,
             **describe(model, "cnn6", "smoke", 4, {}, model.mel_config, data, NAMES, None, 100)}
    assert state["format"] == 3 and state["model_config"]["mel"]["n_mels"] == 64
    save_checkpoint(tmp_path / "new.pt", state)
    flat = {k: v for k, v in state["model_config"].items() if k != "mel"}
    mel = state["model_config"]["mel"]
    flat.update(input_fdim=mel["n_mels"], **{k: mel[k] for k in (
        "sample_rate", "n_fft", "win_length", "hop_length", "fmin", "fmax")})
    save_checkpoint(tmp_path / "old.pt", {**state, "format": 2, "model_config": flat})
    old, new = load_model(tmp_path / "old.pt"), load_model(tmp_path / "new.pt")
    assert old.model.config == new.model.config and old.frontend.config == new.frontend.config
    wave = 0.1 * torch.randn(2, 3 * SR)
    assert torch.equal(old.predict(wave).window_logits, new.predict(wave).window_logits)
