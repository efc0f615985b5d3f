"""Audio files: read, downmix, resample, whole or in blocks. The one place the library reads
audio through libsndfile (any format it reads: wav, flac, ogg, mp3, ...).

- :func:`read_audio`: samples and rate of a file or file-like object, refusing a stream
  that decodes to less than its header announces (datasets read clips with it);
- :func:`load_audio`: a file as mono float32 (S,) at a sample rate (``passt_lib.load_audio``);
- :class:`AudioFile`: a file read in blocks as mono at a sample rate, so that a long recording
  is never in memory whole (``passt-study predict``);
- :func:`to_mono`, :func:`resample`: what all three do to samples.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


def resample(x: np.ndarray | torch.Tensor, sr: int, target_sr: int):
    """Samples (S,) from ``sr`` to ``target_sr`` (``torchaudio.functional.resample``), as a
    NumPy array or a tensor, whichever was given."""
    if sr == target_sr:
        return x
    if isinstance(x, torch.Tensor):
        return AF.resample(x, int(sr), target_sr)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(x)), int(sr), target_sr).numpy()


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


# An mp3 decoder may legitimately deliver up to one frame (1,152 samples) less than the
# length in the stream's header; a stream short by more was cut.
TRUNCATION_TOLERANCE = 1152


def read_audio(source) -> tuple[np.ndarray, int]:
    """(float32 samples (S,) or (S, channels), sample rate) of an audio file or file-like
    object that libsndfile reads (wav, flac, ogg, mp3, ...).

    A stream that decodes to fewer samples than its own header announces is truncated: that
    raises ValueError. (Clips that are simply shorter than the clip length are not: they are
    zero-padded, as the reference does; only a length the file itself contradicts is an error.)
    """
    with sf.SoundFile(source) as f:
        announced = f.frames
        x = f.read(dtype="float32")
        sr = f.samplerate
    if len(x) < announced - TRUNCATION_TOLERANCE:
        raise ValueError(f"truncated audio: decodes to {len(x)} samples but its header "
                         f"announces {announced} ({len(x) / max(announced, 1):.0%})")
    return x, sr


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read an audio file as mono float32 (S,) at ``sample_rate``, resampling if needed.

    Channels are averaged; resampling uses ``torchaudio.functional.resample``.
    """
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, file_rate = read_audio(str(path))
    except Exception as err:  # libsndfile reports unreadable data with several types
        raise ValueError(f"cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} contains no samples")
    wave = resample(torch.from_numpy(to_mono(data)), file_rate, sample_rate)  # (S,)
    return wave.float().contiguous()


class AudioFile:
    """An audio file read in blocks as mono at ``sample_rate``: any format libsndfile reads,
    channels averaged, resampled with ``torchaudio.functional.resample`` block by block.

    A block is resampled from a source span that starts on the resampler's period and
    reaches past the block on both sides by more than its filter, so blocks agree with
    resampling the whole file to float precision (about 1e-6), not bit for bit.
    """

    n_sounds = 1

    def __init__(self, path: str | os.PathLike, sample_rate: int) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"audio file not found: {self.path}")
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as err:  # libsndfile reports unreadable data with several types
            raise ValueError(f"cannot read audio file {self.path}: {err}") from err
        self.file_rate, self.channels = self._file.samplerate, self._file.channels
        self.n_file = self._file.frames
        if self.n_file <= 0:
            self.close()
            raise ValueError(f"audio file {self.path} contains no samples")
        self.sample_rate = sample_rate
        g = math.gcd(self.file_rate, sample_rate)
        self._orig, self._new = self.file_rate // g, sample_rate // g
        self.n_samples = -(-self.n_file * self._new // self._orig)  # the resampled length
        # torchaudio's filter reaches ``width`` source samples to each side
        width = math.ceil(6 * self._orig / (min(self._orig, self._new) * 0.99))
        self._margin = -(-(width + 8) // self._orig) * self._orig + self._orig
        self._whole = None  # a stream that cannot seek is read, downmixed and resampled once
        if not self._file.seekable():
            self._whole = resample(self._read_source(0, self.n_file), self.file_rate,
                                          sample_rate)

    @property
    def notes(self) -> list[str]:
        notes = [f"downmixed from {self.channels} channels"] if self.channels > 1 else []
        if self.file_rate != self.sample_rate:
            notes.append(f"resampled from {self.file_rate} Hz")
        return notes

    @property
    def seconds(self) -> float:
        return self.n_file / self.file_rate

    def _read_source(self, start: int, stop: int) -> torch.Tensor:
        self._file.seek(start)
        return torch.from_numpy(to_mono(self._file.read(stop - start, dtype="float32")))

    def read(self, start: int, stop: int) -> torch.Tensor:
        start, stop = max(start, 0), min(stop, self.n_samples)
        if self._whole is not None:
            return self._whole[None, start:stop]
        if self._orig == self._new:
            return self._read_source(start, stop)[None]
        src0 = max(0, start // self._new * self._orig - self._margin)  # on the period
        src1 = min(self.n_file, -(-stop * self._orig // self._new) + self._margin)
        y = resample(self._read_source(src0, src1), self.file_rate, self.sample_rate)
        at = src0 // self._orig * self._new  # the output sample y[0] is
        return y[None, start - at:stop - at]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
