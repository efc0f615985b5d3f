"""Banks of real recorded sounds for the embedded dataset, from Debian packages.

- Instruments: General MIDI soundfonts (``fluid-soundfont-gm``, ``timgm6mb-soundfont``,
  ``musescore-general-soundfont-small``) rendered with the ``fluidsynth`` command line:
  one MIDI file per soundfont holds every note of every instrument in sequence, one call
  renders it, and the result is sliced into one sample per note.
- Drums: the ``hydrogen-drumkits`` / ``hydrogen-data`` kits; each kit's ``drumkit.xml``
  maps instrument names (and their sample layers) to drum classes.
- Speech: short phrases spoken by ``espeak-ng`` voices/variants and ``flite`` voices.

A bank maps a tag to a list of ``Sample(source, audio)`` where ``source`` names the
recording source (soundfont, kit, voice): the embedded build holds out whole sources.
Banks are cached (int16 arrays in ``.npz`` with a ``.json`` index, read without pickle) because
decoding them is the slow part of a build.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from passt_lib.atomic import atomic_open
from passt_lib.audio import resample

BANK_VERSION = 1

SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts")
# name -> file; the last one present is held out for evaluation.
SOUNDFONTS = {
    "FluidR3_GM": "FluidR3_GM.sf2",
    "MuseScore_General": "MuseScore_General.sf3",
    "TimGM6mb": "TimGM6mb.sf2",
}
DRUMKIT_DIRS = ("/usr/share/hydrogen/data/drumkits",)
EVAL_KITS = ("GMRockKit", "Millo_MultiLayered2", "HardElectro1", "Gimme A Hand 1.0")

# tag -> (GM program, lowest pitch, highest pitch)
INSTRUMENTS = {
    "piano": (0, 40, 84),
    "marimba": (12, 48, 84),
    "organ": (19, 36, 72),
    "acoustic guitar": (24, 40, 76),
    "distorted guitar": (30, 40, 72),
    "bass": (32, 28, 52),
    "violin": (40, 55, 88),
    "cello": (42, 36, 64),
    "trumpet": (56, 55, 80),
    "saxophone": (65, 49, 76),
    "flute": (73, 60, 93),
    "choir": (52, 48, 76),
}

# drum class -> name pattern (first match wins, in this order)
DRUM_RULES = (
    ("clap", r"clap"),
    ("ride", r"ride"),
    ("crash", r"crash|splash|china|cymbal"),
    ("open hi-hat", r"(h\s*h|hat).*(open|\bop\b)|open.*(h\s*h|hat)"),
    ("closed hi-hat", r"h\s*h|hat"),
    ("kick", r"kick|bass\s*drum|\bbd\b"),
    ("snare", r"snare"),
    ("tom", r"tom"),
    ("hand percussion", r"cowbell|shaker|tambourine|clave|woodblock|maraca|bongo|conga|djembe"
                        r"|cajon|sangban|dununba|kenkeni"),
)
DRUM_CLASSES = tuple(c for c, _ in DRUM_RULES)

ESPEAK_VOICES_TRAIN = ("en-us+m1", "en-us+f1", "en-gb+m2", "en-gb+f3", "en-gb-scotland+m4",
                       "en-029+m5", "en-gb-x-rp+f4", "en-gb-x-gbcwmd+m6", "en-gb-x-gbclan+f2",
                       "en-us+m3")
ESPEAK_VOICES_EVAL = ("en-us+f5", "en-gb+m7", "en-gb-x-rp+m3")
FLITE_VOICES_TRAIN = ("kal", "awb", "rms")
FLITE_VOICES_EVAL = ("slt",)

PHRASES = (
    "the quick brown fox", "turn left at the light", "seven eight nine", "good morning everyone",
    "please close the door", "where is the station", "it is raining again", "bring me the red box",
    "we will meet tomorrow", "open the window now", "how much does it cost", "the music is loud",
    "call me after lunch", "one two three four", "the train is late", "listen to the birds",
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SPEECH_TAG = "speech"
MIXTURE_TAGS = (*INSTRUMENTS, *DRUM_CLASSES, SPEECH_TAG)

LICENCES = """Sources of the embedded dataset (all rendered or read offline from Debian packages)

- fluid-soundfont-gm: FluidR3_GM.sf2, Frank Wen and contributors, MIT licence.
- musescore-general-soundfont-small: MuseScore_General.sf3, S. Christian Collins, MIT licence.
- timgm6mb-soundfont: TimGM6mb.sf2, Tim Brechbill, GPL-2.
- hydrogen-drumkits, hydrogen-data: Hydrogen drum kits, GPL / CC licences per kit
  (see each kit's drumkit.xml <license> and /usr/share/doc/hydrogen-drumkits/copyright).
- espeak-ng (GPL-3) and flite (BSD-like) synthetic voices.
- asterisk-core-sounds-en-wav: Asterisk core sounds (digits by Allison Smith), CC-BY-SA 3.0.
Instrument notes are rendered with the fluidsynth command line; mixtures, gains, onsets
and the noise floor are drawn from the build seed.
"""


@dataclass(frozen=True)
class Sample:
    source: str  # e.g. "soundfont:TimGM6mb", "drumkit:GMRockKit", "voice:espeak:en-us+f5"
    audio: np.ndarray  # int16 (S,) at the bank's sample rate, peak-normalised


def missing_tools() -> list[str]:
    """Debian packages the embedded build needs that are not installed."""
    need = {"fluidsynth": "fluidsynth", "espeak-ng": "espeak-ng", "flite": "flite"}
    out = [pkg for exe, pkg in need.items() if shutil.which(exe) is None]
    if len(find_soundfonts()) < 2:
        out += ["fluid-soundfont-gm", "timgm6mb-soundfont", "musescore-general-soundfont-small"]
    if not find_drumkits():
        out += ["hydrogen-drumkits", "hydrogen-data"]
    return out


def find_soundfonts() -> dict[str, Path]:
    found = {}
    for name, fname in SOUNDFONTS.items():
        for d in SOUNDFONT_DIRS:
            p = Path(d) / fname
            if p.exists():
                found[name] = p
                break
    return found


def find_drumkits() -> dict[str, Path]:
    kits = {}
    for d in DRUMKIT_DIRS:
        if Path(d).is_dir():
            for k in sorted(Path(d).iterdir()):
                if (k / "drumkit.xml").is_file():
                    kits[k.name] = k
    return kits


def _to_int16(x: np.ndarray, min_len: int) -> np.ndarray | None:
    """Trim silence, peak-normalise to int16; None if too short or silent."""
    x = np.asarray(x, np.float32)
    loud = np.flatnonzero(np.abs(x) > 1e-3 * max(np.abs(x).max(), 1e-9))
    if len(loud) == 0 or np.abs(x).max() < 1e-4:
        return None
    x = x[loud[0] : loud[-1] + 1]
    if len(x) < min_len:
        return None
    fade = min(len(x) // 4, 256)
    x[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return np.round(x / np.abs(x).max() * 32000).astype(np.int16)


# --- soundfonts -----------------------------------------------------------------------------

def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[tuple[int, int, int, float, float]]) -> bytes:
    """A format-0 MIDI file from (program, pitch, velocity, start_s, duration_s) on channel 0.

    Tempo is the default 120 bpm with 480 ticks per quarter: 960 ticks per second.
    """
    events = []
    for prog, pitch, vel, start, dur in notes:
        t0, t1 = int(round(start * 960)), int(round((start + dur) * 960))
        events.append((t0, 1, bytes([0xC0, prog])))
        events.append((t0, 2, bytes([0x90, pitch, vel])))
        events.append((t1, 0, bytes([0x80, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track, last = b"", 0
    for t, _, msg in events:
        track += _vlq(t - last) + msg
        last = t
    track += _vlq(0) + b"\xff\x2f\x00"
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
            + b"MTrk" + struct.pack(">I", len(track)) + track)


def render_soundfont(path: Path, sample_rate: int, notes_per_instrument: int, seed: int = 0,
                     note_s: float = 1.0, slot_s: float = 1.6) -> dict[str, list[np.ndarray]]:
    """Every instrument's notes rendered in one fluidsynth call, sliced per note."""
    rng = np.random.default_rng(seed)
    notes, index = [], []
    for tag, (prog, lo, hi) in INSTRUMENTS.items():
        pitches = np.linspace(lo, hi, notes_per_instrument).round().astype(int)
        for p in pitches:
            vel = int(rng.integers(70, 121))
            notes.append((prog, int(p), vel, len(notes) * slot_s, note_s))
            index.append(tag)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "notes.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi_bytes(notes))
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8", "-F", str(wav),
               "-r", str(sample_rate), str(path), str(mid)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not wav.exists():
            raise RuntimeError(f"fluidsynth failed on {path}: {res.stderr.strip()[:500]}")
        x, sr = sf.read(wav, dtype="float32")
    x = x.mean(axis=1) if x.ndim == 2 else x
    if sr != sample_rate:
        x = resample(x, sr, sample_rate)
    out: dict[str, list[np.ndarray]] = {}
    slot = int(slot_s * sample_rate)
    for k, tag in enumerate(index):
        a = _to_int16(x[k * slot : (k + 1) * slot], sample_rate // 10)
        if a is not None:
            out.setdefault(tag, []).append(a)
    return out


# --- drum kits ------------------------------------------------------------------------------

def drum_class(instrument_name: str) -> str | None:
    name = instrument_name.lower()
    for cls, pattern in DRUM_RULES:
        if re.search(pattern, name):
            return cls
    return None


def parse_drumkit(kit_dir: Path) -> dict[str, list[Path]]:
    """drum class -> sample files of a Hydrogen kit (from its drumkit.xml)."""
    root = ET.parse(kit_dir / "drumkit.xml").getroot()
    out: dict[str, list[Path]] = {}
    for inst in root.iter():
        if not inst.tag.endswith("instrument"):
            continue
        name = next((c.text or "" for c in inst if c.tag.endswith("name")), "")
        cls = drum_class(name)
        if cls is None:
            continue
        files = [e.text for e in inst.iter() if e.tag.endswith("filename") and e.text]
        for f in files:
            p = kit_dir / f
            if p.is_file() and p not in out.get(cls, []):
                out.setdefault(cls, []).append(p)
    return out


def load_drumkit(kit_dir: Path, sample_rate: int, max_per_class: int = 6
                 ) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for cls, files in parse_drumkit(kit_dir).items():
        pick = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(max_per_class,
                                                                          len(files)))]
        for f in dict.fromkeys(pick):
            x, sr = sf.read(f, dtype="float32")
            x = x.mean(axis=1) if x.ndim == 2 else x
            a = _to_int16(resample(x, sr, sample_rate)[: 2 * sample_rate], sample_rate // 50)
            if a is not None:
                out.setdefault(cls, []).append(a)
    return out


# --- speech ---------------------------------------------------------------------------------

def speak(engine: str, voice: str, text: str, speed: int = 160) -> tuple[np.ndarray, int]:
    if engine == "espeak":
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text]
        res = subprocess.run(cmd, capture_output=True)
        if res.returncode != 0:
            raise RuntimeError(f"espeak-ng -v {voice} failed: {res.stderr[:300]!r}")
        x, sr = sf.read(io.BytesIO(res.stdout), dtype="float32")
        return x, sr
    if engine == "flite":
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            res = subprocess.run(["flite", "-voice", voice, "-t", text, "-o", f.name],
                                 capture_output=True)
            if res.returncode != 0:
                raise RuntimeError(f"flite -voice {voice} failed: {res.stderr[:300]!r}")
            x, sr = sf.read(f.name, dtype="float32")
        return x, sr
    raise ValueError(f"unknown speech engine {engine!r}; expected 'espeak' or 'flite'")


def render_speech(voices: list[tuple[str, str]], texts: tuple[str, ...], sample_rate: int,
                  workers: int = 2) -> dict[str, dict[str, list[np.ndarray]]]:
    """voice id -> text -> [audio int16]; voices are (engine, voice) pairs."""
    jobs = [(e, v, t) for e, v in voices for t in texts]

    def one(job):
        e, v, t = job
        x, sr = speak(e, v, t)
        return _to_int16(resample(x, sr, sample_rate), sample_rate // 10)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, jobs))
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for (e, v, t), a in zip(jobs, results):
        if a is not None:
            out.setdefault(f"voice:{e}:{v}", {}).setdefault(t, []).append(a)
    return out


def speech_voices(split: str) -> list[tuple[str, str]]:
    if split == "train":
        return ([("espeak", v) for v in ESPEAK_VOICES_TRAIN]
                + [("flite", v) for v in FLITE_VOICES_TRAIN if _flite_has(v)])
    return ([("espeak", v) for v in ESPEAK_VOICES_EVAL]
            + [("flite", v) for v in FLITE_VOICES_EVAL if _flite_has(v)])


def _flite_has(voice: str) -> bool:
    if shutil.which("flite") is None:
        return False
    res = subprocess.run(["flite", "-lv"], capture_output=True, text=True)
    return voice in res.stdout.split()


# --- the mixture bank -----------------------------------------------------------------------

Bank = dict[str, dict[str, list[Sample]]]  # split -> tag -> samples


def mixture_bank(sample_rate: int, cache_dir: str | Path, notes_per_instrument: int = 10,
                 workers: int = 2, progress=None) -> Bank:
    """split ("train"/"eval") -> tag -> samples, cached under ``cache_dir``.

    Held out for eval: the last available soundfont, ``EVAL_KITS``, and the eval voices.
    """
    fonts = find_soundfonts()
    kits = find_drumkits()
    missing = missing_tools()
    if missing:
        raise RuntimeError("the embedded dataset needs the Debian packages "
                           f"{' '.join(sorted(set(missing)))} (apt-get install them, or run "
                           "`make setup`; see the README for conda-forge equivalents)")
    params = dict(version=BANK_VERSION, sample_rate=sample_rate, notes=notes_per_instrument,
                  fonts=sorted(fonts), kits=sorted(kits), tags=list(MIXTURE_TAGS),
                  voices=[speech_voices("train"), speech_voices("eval")], phrases=PHRASES)
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(cache_dir) / f"bank-mixtures-{key}"
    if cached_bank_exists(cache):
        return load_bank(cache)

    bank = render_mixture_bank(fonts, kits, sample_rate, notes_per_instrument, workers,
                               progress)
    save_bank(cache, bank)
    return bank


def render_mixture_bank(fonts: dict, kits: dict, sample_rate: int, notes_per_instrument: int,
                        workers: int, progress=None) -> Bank:
    """Render every source of the mixtures bank (what :func:`mixture_bank` caches)."""
    font_names = list(fonts)
    eval_fonts = {font_names[-1]}
    bank: Bank = {"train": {}, "eval": {}}

    def add(split, tag, source, arrays):
        bank[split].setdefault(tag, []).extend(Sample(source, a) for a in arrays)

    def font_job(k_name):
        k, name = k_name
        return name, render_soundfont(fonts[name], sample_rate, notes_per_instrument, seed=k)

    def kit_job(name):
        return name, load_drumkit(kits[name], sample_rate)

    with ThreadPoolExecutor(workers) as pool:
        font_futs = [pool.submit(font_job, kn) for kn in enumerate(font_names)]
        kit_futs = [pool.submit(kit_job, k) for k in kits]
        for fut in font_futs:
            name, tags = fut.result()
            for tag, arrays in tags.items():
                add("eval" if name in eval_fonts else "train", tag, f"soundfont:{name}", arrays)
            if progress:
                progress(f"soundfont {name}")
        for fut in kit_futs:
            name, classes = fut.result()
            for cls, arrays in classes.items():
                add("eval" if name in EVAL_KITS else "train", cls, f"drumkit:{name}", arrays)
    if progress:
        progress("drum kits")
    for split in ("train", "eval"):
        for voice, texts in render_speech(speech_voices(split), PHRASES, sample_rate,
                                          workers).items():
            add(split, SPEECH_TAG, voice, [a for arrays in texts.values() for a in arrays])
    if progress:
        progress("speech")
    for split in ("train", "eval"):
        absent = [t for t in MIXTURE_TAGS if not bank[split].get(t)]
        if absent:
            raise RuntimeError(f"the {split} source bank has no samples for tags {absent}")
    return bank



def cached_bank_exists(stem: Path) -> bool:
    """Whether :func:`save_bank` finished writing ``stem`` (its index is written last)."""
    return stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists()


def save_bank(stem: Path, bank: Bank) -> None:
    """``stem.npz`` (every sample's int16 audio, end to end) and ``stem.json`` (split, tag,
    source and span of each), both written atomically, the index last."""
    index, arrays, at = [], [], 0
    for split, tags in bank.items():
        for tag, samples in tags.items():
            for smp in samples:
                index.append({"split": split, "tag": tag, "source": smp.source,
                              "start": at, "stop": at + len(smp.audio)})
                arrays.append(np.asarray(smp.audio, dtype=np.int16))
                at += len(smp.audio)
    audio = np.concatenate(arrays) if arrays else np.zeros(0, np.int16)
    with atomic_open(stem.with_suffix(".npz")) as f:
        np.savez(f, audio=audio)
    with atomic_open(stem.with_suffix(".json"), "w") as f:
        json.dump({"version": BANK_VERSION, "samples": index}, f)


def load_bank(stem: Path) -> Bank:
    """The bank :func:`save_bank` wrote (arrays read with ``allow_pickle=False``)."""
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
        audio = z["audio"]
    bank: Bank = {}
    for e in json.loads(stem.with_suffix(".json").read_text())["samples"]:
        bank.setdefault(e["split"], {}).setdefault(e["tag"], []).append(
            Sample(e["source"], audio[e["start"]:e["stop"]]))
    return bank
