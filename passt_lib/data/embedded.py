"""The embedded dataset: real recorded sounds mixed into tagged clips, built offline.

``ensure(scale="embedded", seed=0, task="mixtures", root="data") -> DataConfig`` builds
the dataset once and returns a ready ``DataConfig``; later calls with the same
parameters return the cached copy. Layout of ``root/embedded-<task>-<hash>/``:

- ``train_mp3.hdf``, ``eval_mp3.hdf``: the PaSST / AudioSet mp3 HDF5 layout
  (``audio_name`` S20, ``mp3`` vlen uint8 of mp3 bytes, ``target`` packbits uint8) plus a
  ``sources`` dataset (vlen str: the sources mixed into each clip, ";"-separated);
- ``class_labels_indices.csv`` (``index,mid,display_name``), ``SOURCES.txt`` (licences),
  ``params.json``, and ``COMPLETE`` written last (the directory is renamed into place).

Tasks:
- ``mixtures`` (multi-label, AudioSet analogue): each clip mixes 1 or 2 tags (``max_tags``;
  instruments from GM soundfonts, drum classes from Hydrogen kits, speech), each with several
  events at random onsets and gains (``min_gain_db`` to 0 dB), over a noise floor
  (``max_noise_db``). Eval holds out whole sources: one soundfont, several drum kits, several
  voices.
- ``keywords`` (single-label, Speech Commands analogue): one spoken digit per clip, train
  and eval voices disjoint; ``test_mp3.hdf`` holds real human digits from
  ``asterisk-core-sounds-en-wav`` when installed.

Every clip draws from its own ``np.random.default_rng((seed, split, index))``, so the
output does not depend on how the work is split across processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import soundfile as sf
from tqdm import tqdm

from passt_lib.audio import resample, to_mono
from passt_lib.data import sources as S
from passt_lib.data.config import DataConfig
from passt_lib.data.readers import fit_length, write_decoded_cache
from passt_lib.scales import get_scale

BUILD_VERSION = 1
TASKS = ("mixtures", "keywords")
SPLIT_IDS = {"train": 0, "eval": 1, "test": 2}
ASTERISK_DIRS = ("/usr/share/asterisk/sounds/en/digits",
                 "/usr/share/asterisk/sounds/en_US_f_Allison/digits")


def build_params(scale: str = "embedded", seed: int = 0, task: str = "mixtures",
                 **overrides) -> dict:
    """The parameters that define a build (their hash names the cache directory).

    Overrides: n_train, n_eval, clip_seconds, sample_rate, max_tags, max_events, min_gain_db
    (events are mixed at gains uniform in [min_gain_db, 0] dB), max_noise_db (the noise
    floor is uniform in [-60, max_noise_db] dB),
    notes_per_instrument.
    """
    if task not in TASKS:
        raise ValueError(f"unknown embedded task {task!r}; expected one of {TASKS}")
    sc = get_scale(scale)
    p = dict(version=BUILD_VERSION, task=task, seed=int(seed), scale=sc.name,
             sample_rate=sc.sample_rate, clip_seconds=sc.clip_seconds,
             n_train=sc.n_train or 960, n_eval=sc.n_eval or 320, max_tags=2, max_events=4,
             notes_per_instrument=10, min_gain_db=-10.0, max_noise_db=-45.0)
    unknown = sorted(set(overrides) - set(p))
    if unknown:
        raise ValueError(f"unknown embedded build parameters {unknown}; expected some of "
                         f"{sorted(set(p) - {'version', 'task', 'seed', 'scale'})}")
    p.update(overrides)
    return p


def params_hash(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def dataset_dir(params: dict, root: str | Path = "data") -> Path:
    return Path(root) / f"embedded-{params['task']}-{params_hash(params)}"


def _config_for(path: Path, params: dict) -> DataConfig:
    tags = class_names(params["task"])
    single = params["task"] == "keywords"
    test = path / "test_mp3.hdf"
    return DataConfig(
        format="passt-hdf5", train_path=str(path / "train_mp3.hdf"),
        eval_path=str(path / "eval_mp3.hdf"), test_path=str(test) if test.exists() else None,
        class_csv=str(path / "class_labels_indices.csv"), n_classes=len(tags),
        task="singlelabel" if single else "multilabel", sample_rate=params["sample_rate"],
        clip_seconds=params["clip_seconds"], cache=True, name=path.name)


def class_names(task: str) -> tuple[str, ...]:
    return S.MIXTURE_TAGS if task == "mixtures" else S.DIGITS


def default_root() -> Path:
    """``data/`` of the repository checkout (git-ignored), else of the working directory."""
    repo = Path(__file__).resolve().parents[2]
    return repo / "data" if (repo / "pyproject.toml").exists() else Path("data")


def ensure(scale: str | dict = "embedded", seed: int = 0, task: str = "mixtures",
           root: str | Path | None = None, force: bool = False, progress: bool = True,
           workers: int | None = None, bank_dir: str | Path | None = None,
           **overrides) -> DataConfig:
    """Build the embedded dataset if missing (or ``force``), else return the cached one.

    ``scale`` is a scale name (``passt_lib.scales``) or a full params dict from
    ``build_params``; ``overrides`` change build parameters (n_train, n_eval, ...).
    ``root`` defaults to :func:`default_root`, where every command of the project looks.
    Decoded source banks are cached in ``bank_dir`` (default ``root/banks``), keyed by
    their own parameters, so builds with other seeds or sizes reuse them.
    """
    params = dict(scale) if isinstance(scale, dict) else build_params(scale, seed, task,
                                                                     **overrides)
    root = default_root() if root is None else Path(root)
    out = dataset_dir(params, root)
    if (out / "COMPLETE").exists() and not force:
        return _config_for(out, params)
    build(params, out, workers=workers, progress=progress,
          bank_dir=Path(bank_dir) if bank_dir else Path(root) / "banks")
    return _config_for(out, params)


def build(params: dict, out: Path, workers: int | None = None, progress: bool = True,
          bank_dir: Path | None = None, bank: dict | None = None) -> Path:
    """Write the dataset to ``out`` atomically (build in a temp dir, rename at the end).

    ``bank`` (split -> tag -> [Sample]) replaces the rendered source banks (tests).
    """
    t0 = time.perf_counter()
    out = Path(out)
    bank_dir = Path(bank_dir or out.parent / "banks")
    workers = workers or min(2, os.cpu_count() or 1)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sr = params["sample_rate"]
    bar = tqdm(total=params["n_train"] + params["n_eval"], desc=f"building {out.name}",
               unit="clip", disable=not progress)
    bar.set_postfix_str("source banks")
    if bank is None and params["task"] == "mixtures":
        bank = S.mixture_bank(sr, bank_dir, params["notes_per_instrument"], workers)
    elif bank is None:
        bank = keyword_bank(sr, bank_dir, workers)
    bar.set_postfix_str("mixing + mp3")
    for split in ("train", "eval"):
        n = params[f"n_{split}"]
        clips = _render_split(params, bank, split, n, workers, bar)
        _write_hdf5(tmp / f"{split}_mp3.hdf", clips, len(class_names(params["task"])), sr)
    if params["task"] == "keywords":
        test = asterisk_digits(params)
        if test:
            _write_hdf5(tmp / "test_mp3.hdf", test, len(S.DIGITS), sr)
    bar.close()
    write_class_csv(tmp / "class_labels_indices.csv", class_names(params["task"]))
    (tmp / "SOURCES.txt").write_text(S.LICENCES)
    (tmp / "params.json").write_text(json.dumps(params, indent=1, sort_keys=True))
    (tmp / "COMPLETE").write_text(f"built in {time.perf_counter() - t0:.1f} s\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def write_class_csv(path: Path, names) -> None:
    lines = ["index,mid,display_name"]
    for i, n in enumerate(names):
        mid = "/embedded/" + n.replace(" ", "_").replace("-", "_")
        lines.append(f'{i},{mid},"{n}"')
    Path(path).write_text("\n".join(lines) + "\n")


# --- clip rendering (runs in worker processes) ----------------------------------------------

_BANK = None
_PARAMS = None


def _init_worker(bank, params):
    global _BANK, _PARAMS
    _BANK, _PARAMS = bank, params


def encode_mp3(x: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format="MP3")
    return buf.getvalue()


def _place(clip: np.ndarray, audio: np.ndarray, onset: int, gain: float) -> None:
    seg = audio[: len(clip) - onset].astype(np.float32) * (gain / 32767.0)
    clip[onset : onset + len(seg)] += seg


def mixture_clip(bank: dict, params: dict, split: str, i: int):
    """(audio float32 (S,), tag indices, source names) of clip ``i`` of ``split``."""
    rng = np.random.default_rng((params["seed"], SPLIT_IDS[split], i))
    sr, n = params["sample_rate"], int(round(params["sample_rate"] * params["clip_seconds"]))
    tags = S.MIXTURE_TAGS
    k = int(rng.integers(1, params["max_tags"] + 1))
    chosen = np.sort(rng.choice(len(tags), size=k, replace=False))
    clip = np.zeros(n, np.float32)
    used = []
    min_audible = min(n // 2, int(0.3 * sr))
    for t in chosen:
        pool = bank[split][tags[t]]
        max_ev = 2 if tags[t] == S.SPEECH_TAG else params["max_events"]
        for _ in range(int(rng.integers(1, max_ev + 1))):
            s = pool[int(rng.integers(len(pool)))]
            onset = int(rng.integers(0, n - min_audible + 1))
            gain = 10 ** (rng.uniform(params.get("min_gain_db", -20.0), 0) / 20)
            _place(clip, s.audio, onset, gain)
            used.append(s.source)
    noise_db = rng.uniform(-60, params.get("max_noise_db", -35.0))
    clip += rng.standard_normal(n).astype(np.float32) * np.float32(10 ** (noise_db / 20))
    peak = np.abs(clip).max()
    level = 10 ** (rng.uniform(-6, -1) / 20)
    clip *= np.float32(level / max(peak, 1e-6))
    return clip, chosen, sorted(set(used))


def keyword_clip(bank: dict, params: dict, split: str, i: int):
    rng = np.random.default_rng((params["seed"], SPLIT_IDS[split], i))
    n = int(round(params["sample_rate"] * params["clip_seconds"]))
    label = int(rng.integers(len(S.DIGITS)))
    pool = bank[split][S.DIGITS[label]]
    s = pool[int(rng.integers(len(pool)))]
    clip = np.zeros(n, np.float32)
    onset = int(rng.integers(0, max(1, n - min(len(s.audio), n)) + 1))
    _place(clip, s.audio, onset, 1.0)
    clip += rng.standard_normal(n).astype(np.float32) * np.float32(10 ** (rng.uniform(-60, -30) / 20))
    clip *= np.float32(10 ** (rng.uniform(-12, -1) / 20) / max(np.abs(clip).max(), 1e-6))
    return clip, np.array([label]), [s.source]


def _render_one(args):
    split, i = args
    fn = mixture_clip if _PARAMS["task"] == "mixtures" else keyword_clip
    clip, labels, used = fn(_BANK, _PARAMS, split, i)
    mp3 = encode_mp3(clip, _PARAMS["sample_rate"])
    return i, mp3, labels, used, decoded_int16(mp3, len(clip))


def decoded_int16(mp3: bytes, n: int) -> np.ndarray:
    """The clip exactly as the reader's decoded cache holds it (decode, fit, int16)."""
    x, _ = sf.read(io.BytesIO(mp3), dtype="float32")
    x = fit_length(to_mono(x), n)
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def _render_split(params, bank, split, n, workers, bar):
    jobs = [(split, i) for i in range(n)]
    results = [None] * n
    if workers > 1:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(bank, params)) as pool:
            for r in pool.imap_unordered(_render_one, jobs, chunksize=16):
                results[r[0]] = r
                bar.update(1)
    else:
        _init_worker(bank, params)
        for j in jobs:
            r = _render_one(j)
            results[r[0]] = r
            bar.update(1)
    prefix = {"train": "emb_tr", "eval": "emb_ev", "test": "emb_te"}[split]
    return [(f"{prefix}_{i:07d}", mp3, labels, used, dec) for i, mp3, labels, used, dec in results]


def _write_hdf5(path: Path, clips, n_classes: int, sample_rate: int) -> None:
    """clips: list of (name, mp3 bytes, label indices, source names[, decoded int16])."""
    n = len(clips)
    hot = np.zeros((n, n_classes), bool)
    for i, c in enumerate(clips):
        hot[i, c[2]] = True
    with h5py.File(path, "w") as f:
        f.create_dataset("audio_name", data=np.array([c[0].encode() for c in clips], dtype="S20"))
        mp3 = f.create_dataset("mp3", shape=(n,), dtype=h5py.vlen_dtype(np.uint8))
        for i, c in enumerate(clips):
            mp3[i] = np.frombuffer(c[1], dtype=np.uint8)
        f.create_dataset("target", data=np.packbits(hot, axis=1))
        f.create_dataset("sources", data=[";".join(c[3]) for c in clips],
                         dtype=h5py.string_dtype())
    if clips and len(clips[0]) > 4:  # the decoded sidecar the reader's ``cache`` uses
        dec = np.stack([c[4] for c in clips])  # (N, S)
        write_decoded_cache(Path(f"{path}.decoded-{sample_rate}-{dec.shape[1]}.npy"), dec)


# --- keywords -------------------------------------------------------------------------------

def keyword_bank(sample_rate: int, cache_dir: Path, workers: int = 2):
    """split -> digit word -> samples; espeak/flite voices, train and eval voices disjoint."""
    key = hashlib.sha1(json.dumps([S.BANK_VERSION, sample_rate, S.speech_voices("train"),
                                   S.speech_voices("eval")]).encode()).hexdigest()[:12]
    cache = Path(cache_dir) / f"bank-keywords-{key}"
    if S.cached_bank_exists(cache):
        return S.load_bank(cache)
    bank = {}
    for split in ("train", "eval"):
        bank[split] = {}
        for voice, texts in S.render_speech(S.speech_voices(split), S.DIGITS, sample_rate,
                                            workers).items():
            for word, arrays in texts.items():
                bank[split].setdefault(word, []).extend(S.Sample(voice, a) for a in arrays)
    S.save_bank(cache, bank)
    return bank


def asterisk_digits(params: dict, copies: int = 4):
    """Real human digits (asterisk-core-sounds-en-wav) as test clips, or [] if not installed.

    The package holds one recording per digit (one speaker); each is placed ``copies``
    times at a random onset and level over a noise floor, drawn from the build seed.
    """
    sr, n = params["sample_rate"], int(round(params["sample_rate"] * params["clip_seconds"]))
    dirs = {Path(d).resolve() for d in ASTERISK_DIRS if Path(d).is_dir()}
    clips = []
    for d in sorted(dirs):
        for label, _ in enumerate(S.DIGITS):
            f = d / f"{label}.wav"
            if not f.is_file():
                continue
            x, fsr = sf.read(f, dtype="float32")
            x = resample(to_mono(x), fsr, sr)[:n]
            x = x / max(np.abs(x).max(), 1e-6)
            for _ in range(copies):
                rng = np.random.default_rng((params["seed"], SPLIT_IDS["test"], len(clips)))
                clip = np.zeros(n, np.float32)
                onset = int(rng.integers(0, n - len(x) + 1))
                clip[onset : onset + len(x)] = x * np.float32(10 ** (rng.uniform(-12, -1) / 20))
                clip += rng.standard_normal(n).astype(np.float32) * np.float32(
                    10 ** (rng.uniform(-60, -30) / 20))
                mp3 = encode_mp3(clip, sr)
                clips.append((f"emb_te_{len(clips):07d}", mp3, np.array([label]),
                              [f"human:asterisk:{d.parent.name}"], decoded_int16(mp3, n)))
    return clips


def read_sources(path: str | Path) -> list[list[str]]:
    """The per-clip source lists stored next to an embedded HDF5 file's clips."""
    with h5py.File(path, "r") as f:
        return [(s.decode() if isinstance(s, bytes) else s).split(";") for s in f["sources"][()]]
