"""Windows that follow the model's time grid, audio read in blocks, and the HEAR checks.

The released architecture ``passt_s_swa_p16_128_ap476`` is built at reduced width with random
weights, the same on both sides, for the comparisons with ``hear21passt``.
"""


import numpy as np
import pytest
import soundfile as sf
import torch
from reference import quiet

from passt_lib import embeddings as E
from passt_lib.audio import AudioFile, load_audio
from passt_lib.data.sources import Sample, load_bank, save_bank
from passt_lib.inference import AudioTagger, TensorSource
from passt_lib.windows import TimeGrid, column_starts

SR = 32000
ARCH = "passt_s_swa_p16_128_ap476"


# ------------------------------------------------------------------------- the window rule
def test_input_that_adds_no_time_patch_is_one_window():
    paper = TimeGrid(998, 16, 10)  # 99 time patches
    assert paper.starts(1000, 250) == ([0], 1000)  # a 10.0 s clip: 99 patches as well
    assert paper.starts(400, 250) == ([0], 400)
    starts, length = paper.starts(1006, 250)  # one more patch column: two windows
    assert length == 998 and starts == [0, 8]
    assert TimeGrid(998, 16, 12, columns=83).starts(1000, 250) == ([0], 1000)


@pytest.mark.parametrize("frames,hop", [(2000, 250), (2001, 998), (5013, 333), (999 + 998, 1)])
def test_windows_cover_long_input_unpadded_and_end_at_its_end(frames, hop):
    starts, length = TimeGrid(998, 16, 10).starts(frames, hop)
    assert length == 998 and starts[0] == 0 and starts[-1] + length == frames
    steps = np.diff(starts)
    assert (steps[:-1] == hop).all() and 0 < steps[-1] <= hop  # frames in no window: none
    with pytest.raises(ValueError, match="hop must be in \\[1, 998\\] frames.*got 999"):
        TimeGrid(998, 16, 10).starts(frames, 999)


def test_column_windows_tile_every_column_once_or_overlap_at_the_end():
    assert column_starts(5, 99) == [0]
    assert column_starts(198, 99) == [0, 99]
    assert column_starts(200, 99) == [0, 99, 101]


# ------------------------------------------------------------------ as hear21passt runs it
@pytest.fixture(scope="module")
def released():
    """(hear21passt wrapper factory, our tagger) of the same random weights."""
    from hear21passt.models.passt import PaSST as RefPaSST
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    torch.manual_seed(0)
    with quiet():
        net = RefPaSST(img_size=(128, 998), stride=(10, 10), distilled=True, embed_dim=64,
                       depth=2, num_heads=1, num_classes=527).eval()
    mel = AugmentMelSTFT(n_mels=128, sr=SR, win_length=800, hopsize=320, n_fft=1024, freqm=48,
                         timem=192, htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10,
                         fmax_aug_range=2000).eval()

    def wrapper(mode):
        return PasstBasicWrapper(mel=mel, net=net, mode=mode).eval()

    ours = AudioTagger.from_reference({f"net.{k}": v for k, v in net.state_dict().items()}, ARCH)
    return wrapper, ours


@pytest.mark.parametrize("seconds", [10.0, 5.0])
def test_scene_embeddings_and_clip_scores_equal_hear21passt(released, seconds):
    wrapper, ours = released
    torch.manual_seed(1)
    audio = 0.1 * torch.randn(2, int(seconds * SR))
    with torch.no_grad(), quiet():
        ref_scene = wrapper("embed_only").get_scene_embeddings(audio)
        ref_logits = wrapper("logits")(audio)
    pred = ours.predict(audio)
    assert pred.window_logits.shape[1] == 1  # one window, as the model's forward takes it
    assert torch.allclose(pred.window_logits[:, 0], ref_logits, atol=1e-5)
    assert torch.allclose(pred.clip_mean, ref_logits.sigmoid(), atol=1e-6)
    scene = E.get_scene_embeddings(audio, E.HearModel(ours))
    assert (scene - ref_scene).norm() / ref_scene.norm() < 1e-5


# ------------------------------------------------------------------- audio read in blocks
@pytest.fixture(scope="module")
def long_stereo(tmp_path_factory):
    path = tmp_path_factory.mktemp("blocks") / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(path, 0.1 * rng.standard_normal((int(41.3 * 44100), 2)).astype(np.float32), 44100)
    return path


def test_a_file_read_in_blocks_equals_the_whole_file(long_stereo):
    whole = load_audio(long_stereo, SR)
    with AudioFile(long_stereo, SR) as f:
        assert f.n_samples == len(whole) and f.notes == ["downmixed from 2 channels",
                                                         "resampled from 44100 Hz"]
        for a, b in ((0, 5000), (123_457, 400_001), (len(whole) - 7_000, len(whole))):
            assert (f.read(a, b)[0] - whole[a:b]).abs().max() < 1e-4


def test_spectrogram_frames_from_their_samples_equal_the_whole_spectrogram(released):
    _, ours = released
    wave = 0.1 * torch.randn(1, 30 * SR)
    whole = ours.mel(wave)  # (1, F, T)
    src = TensorSource(wave)
    for f0, f1 in ((0, 998), (1234, 2232), (whole.shape[2] - 500, whole.shape[2])):
        assert torch.allclose(ours.mel_frames(src, f0, f1), whole[..., f0:f1], atol=1e-5)
    mirrored = ours.mel_frames(src, -3, 2)  # frames before the start mirror those after it
    assert torch.allclose(mirrored, whole[..., [3, 2, 1, 0, 1]], atol=1e-5)


def test_predict_on_a_file_in_blocks_equals_the_in_memory_path(released, long_stereo):
    _, ours = released
    whole = ours.predict(load_audio(long_stereo, SR), batch_size=4)
    with AudioFile(long_stereo, SR) as f:
        blocks = ours.predict(f, batch_size=4)  # four windows per block: 4 blocks
    assert blocks.window_logits.shape == whole.window_logits.shape == (1, 14, 527)
    assert (blocks.window_logits - whole.window_logits).abs().max() < 1e-4
    assert torch.equal(blocks.start_seconds, whole.start_seconds)
    assert blocks.end_seconds[-1] == pytest.approx(41.3, abs=1e-4)
    assert blocks.start_seconds.dtype == torch.float64


# ------------------------------------------------------------------ timestamp embeddings
def _reference_columns(model, audio, start, n_cols):
    """Embeddings of ``n_cols`` patch columns of one window starting at frame ``start``
    (mirrored frames before 0 and past the end), computed directly."""
    c = model.model.config
    mel = model.mel(audio)  # (B, F, T)
    t = mel.shape[2]
    idx = torch.arange(start, start + (n_cols - 1) * c.tstride + c.patch_size[1]).abs()
    idx = torch.where(idx > t - 1, 2 * (t - 1) - idx, idx)
    with torch.no_grad():
        tokens = model.model.forward_tokens(mel[..., idx].unsqueeze(1))[:, 2:]
    return tokens.unflatten(1, (c.grid[0], n_cols)).mean(dim=1)  # (B, n_cols, D)


def test_timestamps_every_50_ms_interleave_two_shifted_patch_grids(released):
    _, tagger = released
    model = E.HearModel(tagger)
    assert model.timestamp_hop_ms == 50
    torch.manual_seed(2)
    audio = 0.1 * torch.randn(2, int(25.3 * SR))  # 3 windows of patches per grid
    emb, ts = E.get_timestamp_embeddings(audio, model)
    assert torch.allclose(ts.diff(dim=1), torch.tensor(50.0))
    assert ts[0, 0] == pytest.approx(5.0) and 25300 - 50 < ts[0, -1] <= 25300
    n = emb.shape[1]
    assert n == ts.shape[1] == 506
    # every other timestamp is the 100 ms grid; the others are that grid shifted by 5 frames
    coarse, ts100 = E.get_timestamp_embeddings(audio, E.HearModel(tagger, timestamp_hop_ms=100))
    assert torch.equal(coarse, emb[:, ::2]) and torch.equal(ts100, ts[:, ::2])
    assert torch.allclose(emb[:, 0:198:2], _reference_columns(model, audio, -7, 99), atol=1e-4)
    assert torch.allclose(emb[:, 1:198:2], _reference_columns(model, audio, -2, 99), atol=1e-4)
    last = _reference_columns(model, audio, -2 + 5 * (n - 1 - 1 - 2 * 98), 99)  # the end window
    assert torch.allclose(emb[:, -1], last[:, -1], atol=1e-4)
    with pytest.raises(ValueError, match="timestamp_hop_ms.*one of 10, 20, 50, 100; got 30"):
        E.HearModel(tagger, timestamp_hop_ms=30)


def test_hear_2021_api_checks(released, tmp_path):
    """The checks of HEAR's validator (hearvalidator), written out: it needs TensorFlow."""
    _, tagger = released
    model = E.HearModel(tagger)
    assert isinstance(model, torch.nn.Module) and model.sample_rate == SR
    assert isinstance(model.scene_embedding_size, int)
    assert isinstance(model.timestamp_embedding_size, int)
    for n_sounds, seconds in ((1, 0.5), (3, 2.0), (2, 12.0)):
        audio = (torch.rand(n_sounds, int(seconds * SR)) * 2 - 1) * 0.5
        scene = E.get_scene_embeddings(audio, model)
        emb, ts = E.get_timestamp_embeddings(audio, model)
        assert scene.shape == (n_sounds, model.scene_embedding_size)
        assert emb.shape[::2] == (n_sounds, model.timestamp_embedding_size)
        assert ts.shape == emb.shape[:2] and emb.shape[1] >= 1
        assert scene.dtype == emb.dtype == ts.dtype == torch.float32
        gaps = ts.diff(dim=1)
        assert torch.allclose(gaps, gaps[:, :1].expand_as(gaps)) and (gaps <= 50).all()
        assert (ts >= 0).all() and (ts <= seconds * 1000).all()
        # a sound's embeddings do not depend on the others in its batch
        alone = E.get_scene_embeddings(audio[-1:], model)
        assert torch.allclose(alone, scene[-1:], atol=1e-5)


# ---------------------------------------------------------------------- sound-bank caches
def test_sound_banks_are_cached_as_arrays_and_json(tmp_path):
    bank = {"train": {"piano": [Sample("soundfont:a", np.arange(5, dtype=np.int16)),
                                Sample("soundfont:b", np.array([7, -3], dtype=np.int16))]},
            "eval": {"speech": [Sample("voice:x", np.zeros(3, dtype=np.int16))]}}
    save_bank(tmp_path / "bank-x", bank)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank-x.json", "bank-x.npz"]
    again = load_bank(tmp_path / "bank-x")
    assert again.keys() == bank.keys()
    for split in bank:
        for tag, samples in bank[split].items():
            got = again[split][tag]
            assert [s.source for s in got] == [s.source for s in samples]
            assert all(np.array_equal(a.audio, b.audio) for a, b in zip(got, samples))
