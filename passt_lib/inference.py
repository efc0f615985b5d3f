"""Trained models in use: load one, tag audio of any length, read embeddings.

- :func:`load_model` (``passt_lib.load_model``): a checkpoint written by ``passt-study train``,
  or a folder written by ``passt-study export`` -> an :class:`AudioTagger` in eval mode, with
  its front-end, sample rate, class names and task, rebuilt from the file alone. Files are
  read without unpickling code (``checkpoints.load_checkpoint``);
- :meth:`AudioTagger.from_reference`: the authors' released weights by architecture name
  (``passt_lib.released``), with AudioSet names from a class CSV;
- :meth:`AudioTagger.predict`: a waveform or an audio file of any length -> window scores and
  the clip's mean and max. Windows follow the model's time grid (``passt_lib.windows``: a
  10 s clip of a 10 s model is one window; no window is padded) and run as batches;
- :class:`AudioFile` / :class:`TensorSource`: where the samples come from. Spectrograms are
  computed block by block (a batch of windows at a time) from the samples those windows need,
  so working memory does not grow with the length of the audio; a file is read, downmixed
  and resampled in blocks as well.

The checkpoint's lower-level reading and writing (training state, resume) is
``passt_lib.checkpoints.save_checkpoint`` / ``load_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn as nn

from passt_lib.checkpoints import (
    CHECKPOINT_FORMAT,
    DESCRIBED_FROM,
    export_model,
    load_checkpoint,
    load_reference_checkpoint,
    read_exported,
)
from passt_lib.data.readers import read_class_csv
from passt_lib.frontend import MelConfig, MelFrontend, check_finite
from passt_lib.models import create_model
from passt_lib.provenance import git_state
from passt_lib.released import released
from passt_lib.windows import TimeGrid


# --------------------------------------------------------------------------------------------
# Where samples come from
# --------------------------------------------------------------------------------------------
class WaveSource(Protocol):
    """Samples at the model's rate, read a span at a time: (n_sounds, stop - start)."""

    n_sounds: int
    n_samples: int

    def read(self, start: int, stop: int) -> torch.Tensor: ...


class TensorSource:
    """Waveforms already in memory, (B, S) or (S,)."""

    def __init__(self, wave: torch.Tensor) -> None:
        if not isinstance(wave, torch.Tensor) or wave.dim() not in (1, 2):
            raise ValueError(f"expected waveforms (B, S) or (S,), got "
                             f"{tuple(getattr(wave, 'shape', ())) or type(wave).__name__}")
        self.wave = wave.unsqueeze(0) if wave.dim() == 1 else wave
        self.n_sounds, self.n_samples = self.wave.shape

    def read(self, start: int, stop: int) -> torch.Tensor:
        return self.wave[:, start:stop]


def as_source(wave: torch.Tensor | WaveSource) -> WaveSource:
    return TensorSource(wave) if isinstance(wave, torch.Tensor) else wave


@dataclass
class TagPrediction:
    """What :meth:`AudioTagger.predict` returns for a batch of waveforms."""

    window_logits: torch.Tensor  # (B, W, C)
    start_seconds: torch.Tensor  # (W,) float64
    end_seconds: torch.Tensor  # (W,) float64, clipped to the audio
    window_scores: torch.Tensor  # (B, W, C): sigmoid (multi-label) or softmax (single-label)
    clip_mean: torch.Tensor  # (B, C): scores averaged over windows
    clip_max: torch.Tensor  # (B, C): the highest score of each class in any window


class AudioTagger(nn.Module):
    """A trained model with its front-end: waveforms (B, S) at ``sample_rate`` in, tags out.

    ``classes`` names the outputs (AudioSet ``mids`` too where known); ``task`` is
    "multilabel" (sigmoid scores) or "singlelabel" (softmax). ``window_frames`` is the input
    length the model was trained on, in frames of its front-end.
    """

    def __init__(self, model: nn.Module, mel_config: MelConfig, *, classes: list[str] | None,
                 mids: list[str] | None = None, task: str = "multilabel", name: str = "",
                 window_frames: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.frontend = MelFrontend(mel_config)
        n = model.n_classes
        self.classes = list(classes) if classes else [f"class {i}" for i in range(n)]
        if len(self.classes) != n:
            raise ValueError(f"{len(self.classes)} class names for a model with {n} outputs")
        self.mids = list(mids) if mids else None
        self.task, self.name = task, name
        config = getattr(model, "config", None)
        self.window_frames = window_frames or getattr(config, "input_tdim", None)
        if not self.window_frames:
            raise ValueError("give window_frames: the model does not say its input length")
        self.eval()

    @property
    def sample_rate(self) -> int:
        return self.frontend.config.sample_rate

    @property
    def frame_seconds(self) -> float:
        return self.frontend.config.hop_length / self.sample_rate

    @property
    def window_seconds(self) -> float:
        return self.window_frames * self.frame_seconds

    @property
    def time_grid(self) -> TimeGrid:
        """The model's time axis (patches, stride), or plain frames for models without one."""
        grid = getattr(self.model, "time_grid", None)
        return grid if grid is not None else TimeGrid(self.window_frames)

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Eval-mode log-mel (B, F, T) of waveforms (B, S) or (S,); non-finite input is an
        error naming the clips, a peak far above 1 a warning (``MelFrontend.check_input``)."""
        wave = wave.unsqueeze(0) if wave.dim() == 1 else wave
        self.frontend.eval()
        with torch.no_grad():
            return self.frontend(wave.to(next(self.parameters()).device))

    def mel_frames(self, source: WaveSource, f0: int, f1: int) -> torch.Tensor:
        """Frames [f0, f1) of the log-mel (B, F, f1 - f0) of ``source``, computed from the
        samples they need only; they equal the frames of the whole input's spectrogram.
        Frames before 0 or past the end mirror the frames inside (reflection about the
        first and the last frame)."""
        c = self.frontend.config
        total = self.frontend.n_frames(source.n_samples)
        idx = torch.arange(f0, f1).abs()
        idx = torch.where(idx > total - 1, 2 * (total - 1) - idx, idx).clamp(0, total - 1)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        margin = -(-(c.n_fft + 1) // c.hop_length) + 1  # frames whose samples reach [lo, hi)
        a = max(0, lo - margin) * c.hop_length
        b = min(source.n_samples, (hi + margin) * c.hop_length)
        mel = self.mel(source.read(a, b))  # (B, F, T_seg): segment frame j is frame a/hop + j
        return mel[..., idx - a // c.hop_length]

    def window_outputs(self, source: WaveSource, starts: list[int], length: int,
                       fn: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 16
                       ) -> Iterator[tuple[int, torch.Tensor]]:
        """(index of the block's first window, ``fn`` of its windows as (B, w, ...)) for the
        windows of ``length`` frames at ``starts``, ``batch_size`` windows per forward pass.
        Each block's spectrogram is computed from the samples it needs (``mel_frames``)."""
        b = source.n_sounds
        per = max(1, batch_size // b)
        for i in range(0, len(starts), per):
            block = starts[i:i + per]
            mel = self.mel_frames(source, block[0], block[-1] + length)  # (B, F, span)
            check_finite(mel)
            wins = torch.stack([mel[..., s - block[0]:s - block[0] + length] for s in block],
                               dim=1)  # (B, w, F, L)
            out = fn(wins.flatten(0, 1).unsqueeze(1))  # (B * w, ...)
            yield i, out.view(b, len(block), *out.shape[1:]).float().cpu()

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1) if self.task == "singlelabel" else logits.sigmoid()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of waveforms no longer than the model's window."""
        return self.model(self.mel(wave))

    @torch.no_grad()
    def predict(self, wave: torch.Tensor | WaveSource, hop_seconds: float | None = None,
                batch_size: int = 16) -> TagPrediction:
        """Window and clip scores of waveforms (B, S) or (S,), or of an :class:`AudioFile`.

        Windows follow the model's time grid (``passt_lib.windows``): audio that adds no time
        patch beyond the model's window is one window; longer audio gives windows of the
        model's length every ``hop_seconds`` (default a quarter of the window, 2.5 s for a
        10 s model; at most the window), the last one ending at the audio's end. No window
        is padded: its start and end say what it saw. Windows run as batches.
        """
        source = as_source(wave)
        if hop_seconds is not None and not 0 < hop_seconds <= self.window_seconds:
            raise ValueError(f"hop must be in (0, {self.window_seconds:g}] seconds (the model's "
                             f"window); got {hop_seconds:g}")
        hop = (self.window_frames // 4 if hop_seconds is None
               else int(round(hop_seconds / self.frame_seconds)))
        total = self.frontend.n_frames(source.n_samples)
        starts, length = self.time_grid.starts(total, max(hop, 1))
        self.model.eval()
        logits = torch.cat([out for _, out in self.window_outputs(
            source, starts, length, self.model, batch_size)], dim=1)  # (B, W, C)
        s = self.scores(logits)
        begin = torch.tensor(starts, dtype=torch.float64)
        seconds = source.n_samples / self.sample_rate  # the last frame reaches past the audio
        return TagPrediction(logits, begin * self.frame_seconds,
                             ((begin + length) * self.frame_seconds).clamp(max=seconds), s,
                             s.mean(dim=1), s.amax(dim=1))

    @classmethod
    def from_reference(cls, source, arch: str, class_csv: str | os.PathLike | None = None,
                       prefer: str = "net") -> AudioTagger:
        """The authors' weights (a path or a state dict) of released architecture ``arch``,
        with its front-end (``released.ReleasedArch.hop_length``) and, given the AudioSet
        class CSV (``index,mid,display_name``), its class names."""
        a = released(arch)
        model = load_reference_checkpoint(source, arch, prefer=prefer)
        names = mids = None
        if class_csv is not None:
            rows = read_class_csv(class_csv)
            names, mids = [r[2] for r in rows], [r[1] for r in rows]
        mel = MelConfig(n_mels=a.input_fdim, hop_length=a.hop_length)
        return cls(model, mel, classes=names, mids=mids, name=arch)


# --------------------------------------------------------------------------------------------
# Our checkpoints
# --------------------------------------------------------------------------------------------
DESCRIBED = ("model_name", "model_config", "mel_config", "sample_rate", "clip_seconds",
             "classes", "task")


def load_model(path: str | os.PathLike, **expected) -> AudioTagger:
    """A checkpoint written by ``passt-study train``, or a folder written by ``passt-study
    export``, as a ready :class:`AudioTagger`. Neither can run code: checkpoints load with
    ``weights_only=True``, exported folders are safetensors and JSON.

    ``expected`` are facts the caller relies on (``sample_rate=32000``, ``n_classes=527``,
    ``model_name="passt-s"``, ``task="multilabel"``, ``clip_seconds=10``): any the checkpoint
    contradicts is an error naming the fields. A checkpoint written before checkpoints
    described themselves (format 1), or saved in a coarse phase of a coarse-to-fine run, is
    an error saying what to do.
    """
    state = read_exported(path) if os.path.isdir(path) else load_checkpoint(path)
    fmt = state.get("format", 1)
    if fmt < DESCRIBED_FROM:
        missing = [k for k in DESCRIBED if k not in state]
        raise ValueError(
            f"{path} is a format-{fmt} checkpoint, written before checkpoints described "
            f"themselves: it lacks {', '.join(missing)}. Train again with this version (or "
            f"continue it with --resume, which writes format {CHECKPOINT_FORMAT} at the next "
            f"epoch), or load its weights from its 'model' entry yourself")
    if not state.get("phase_full", True):
        raise ValueError(f"{path} was saved in a coarse phase of a coarse-to-fine run (after "
                         f"epoch {state['epoch']}); only full-resolution models can be used: "
                         f"finish the run with --resume, or use its final checkpoint")
    _check_expected(path, state, expected)
    model = rebuild_model(state)
    model.load_state_dict(state["model"])
    return AudioTagger(model, MelConfig(**state["mel_config"]), classes=state["classes"],
                       mids=state.get("mids"), task=state["task"], name=state["model_name"],
                       window_frames=state.get("window_frames"))


def export(checkpoint: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """``passt-study export``: the model of a checkpoint as ``folder/model.safetensors`` and
    ``folder/model.json``, for sharing; :func:`load_model` reads the folder. A checkpoint of
    a coarse phase is refused (only full-resolution models are used)."""
    state = load_checkpoint(checkpoint)
    if not state.get("phase_full", True):
        raise ValueError(f"{checkpoint} was saved in a coarse phase of a coarse-to-fine run; "
                         f"export its final checkpoint")
    return export_model(state, folder, DESCRIBED, os.fspath(checkpoint))


def _check_expected(path, state: dict, expected: dict) -> None:
    described = {"sample_rate": state["sample_rate"], "clip_seconds": state["clip_seconds"],
                 "model_name": state["model_name"], "task": state["task"],
                 "n_classes": len(state["classes"]), "classes": state["classes"]}
    unknown = sorted(set(expected) - set(described))
    if unknown:
        raise ValueError(f"cannot check {unknown}: a checkpoint describes {sorted(described)}")
    diff = [f"{k}: the checkpoint has {described[k]!r}, you expect {v!r}"
            for k, v in expected.items() if described[k] != v]
    if diff:
        raise ValueError(f"{path} does not match what you expect: {'; '.join(diff)}")


def rebuild_model(state: dict) -> nn.Module:
    """The model a self-describing checkpoint holds, built from its description: its config
    as overrides of its registered name, or, for a model without a config dataclass, as
    training built it."""
    name, cfg = state["model_name"], state["model_config"]
    if cfg is not None:
        return create_model(name, **cfg)
    b = state["build"]
    return create_model(name, b["scale"], b["n_classes"], **b["overrides"])


def describe(model: nn.Module, name: str, scale: str, n_classes: int, overrides: dict,
             mel_config: MelConfig, data, classes, mids, window_frames: int) -> dict:
    """The entries that make a checkpoint self-describing (``load_model`` reads them)."""
    config = getattr(model, "config", None)
    return {
        "format": CHECKPOINT_FORMAT, "model_name": name,
        "model_config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None,
        "build": {"scale": scale, "n_classes": n_classes, "overrides": overrides},
        "mel_config": dataclasses.asdict(mel_config), "sample_rate": data.sample_rate,
        "clip_seconds": data.clip_seconds, "window_frames": window_frames,
        "classes": list(classes) if classes else [f"class {i}" for i in range(n_classes)],
        "mids": list(mids) if mids else None, "task": data.task,
        "commit": git_state()["commit"],
    }
