"""Trained models in use: load one, tag audio of any length, read embeddings.

- :func:`load_model` (``passt_lib.load_model``): a checkpoint written by ``passt-study train``
  -> an :class:`AudioTagger` in eval mode, with its front-end, sample rate, class names and
  task, rebuilt from the checkpoint alone;
- :meth:`AudioTagger.from_reference`: the authors' released weights by architecture name
  (``passt_lib.released``), with AudioSet names from a class CSV;
- :meth:`AudioTagger.predict`: a waveform of any length -> window scores (windows of the
  model's input length, overlapping, run as batches) and the clip's mean and max;
- :func:`slide_windows`: the windowing itself, shared with ``PaSST.predict_long``.

The checkpoint's lower-level reading and writing (training state, resume) is
``passt_lib.checkpoints.save_checkpoint`` / ``load_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from passt_lib.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from passt_lib.frontend import MelConfig, MelFrontend, check_finite


def slide_windows(mel: torch.Tensor, window: int, hop: int, pad_value: float | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut (B, 1, F, T) into windows of ``window`` frames every ``hop`` frames.

    Returns (windows (B * W, 1, F, window), starts (W,), ends (W,) exclusive, clipped to T).
    Input no longer than one window is one (unpadded) window of its own length; otherwise
    the last window is padded with ``pad_value`` (default: each input's minimum, its quietest
    bin). ``hop`` must be in [1, window]: a longer hop would leave frames in no window.
    """
    if not 1 <= hop <= window:
        raise ValueError(f"the hop must be in [1, {window}] frames (the window): a hop longer "
                         f"than the window leaves frames in no window; got {hop}")
    b, _, f, t_in = mel.shape
    if t_in <= window:
        n_win, window = 1, t_in
    else:
        n_win = math.ceil((t_in - window) / hop) + 1
        pad = (n_win - 1) * hop + window - t_in
        if pad:
            fill = (mel.amin(dim=(1, 2, 3), keepdim=True) if pad_value is None
                    else torch.full((b, 1, 1, 1), pad_value, dtype=mel.dtype, device=mel.device))
            mel = torch.cat([mel, fill.expand(b, 1, f, pad)], dim=3)  # (B, 1, F, T')
    windows = mel.unfold(3, window, hop)  # (B, 1, F, W, window)
    windows = windows.permute(0, 3, 1, 2, 4).reshape(b * n_win, 1, f, window)  # (B*W, 1, F, t)
    starts = torch.arange(n_win) * hop
    return windows, starts, (starts + window).clamp(max=t_in)


@dataclass
class TagPrediction:
    """What :meth:`AudioTagger.predict` returns for a batch of waveforms."""

    window_logits: torch.Tensor  # (B, W, C)
    start_seconds: torch.Tensor  # (W,)
    end_seconds: torch.Tensor  # (W,), clipped to the audio
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

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Eval-mode log-mel (B, F, T) of waveforms (B, S) or (S,); non-finite input is an
        error naming the clips, a peak far above 1 a warning (``MelFrontend.check_input``)."""
        wave = wave.unsqueeze(0) if wave.dim() == 1 else wave
        self.frontend.eval()
        with torch.no_grad():
            return self.frontend(wave.to(next(self.parameters()).device))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1) if self.task == "singlelabel" else logits.sigmoid()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of waveforms no longer than the model's window."""
        return self.model(self.mel(wave))

    @torch.no_grad()
    def predict(self, wave: torch.Tensor, hop_seconds: float | None = None,
                batch_size: int = 16) -> TagPrediction:
        """Window and clip scores of waveforms (B, S) or (S,) of any length.

        Windows are the model's input length; ``hop_seconds`` defaults to a quarter of it
        (2.5 s for a 10 s model) and may not exceed it. Windows run as batches.
        """
        if hop_seconds is not None and not 0 < hop_seconds <= self.window_seconds:
            raise ValueError(f"hop must be in (0, {self.window_seconds:g}] seconds (the model's "
                             f"window); got {hop_seconds:g}")
        hop = (self.window_frames // 4 if hop_seconds is None
               else int(round(hop_seconds / self.frame_seconds)))
        mel = self.mel(wave).unsqueeze(1)  # (B, 1, F, T)
        check_finite(mel)
        windows, starts, ends = slide_windows(mel, self.window_frames, max(hop, 1))
        self.model.eval()
        logits = torch.cat([self.model(w) for w in windows.split(batch_size)]).float()
        logits = logits.view(mel.shape[0], len(starts), -1).cpu()  # (B, W, C)
        s = self.scores(logits)
        seconds = wave.shape[-1] / self.sample_rate  # the last frame reaches past the audio
        return TagPrediction(logits, starts * self.frame_seconds,
                             (ends * self.frame_seconds).clamp(max=seconds), s,
                             s.mean(dim=1), s.amax(dim=1))

    @classmethod
    def from_reference(cls, source, arch: str, class_csv: str | os.PathLike | None = None,
                       prefer: str = "net") -> AudioTagger:
        """The authors' weights (a path or a state dict) of released architecture ``arch``,
        with its front-end (``released.ReleasedArch.hop_length``) and, given the AudioSet
        class CSV (``index,mid,display_name``), its class names."""
        from passt_lib.checkpoints import load_reference_checkpoint
        from passt_lib.released import released

        a = released(arch)
        model = load_reference_checkpoint(source, arch, prefer=prefer)
        names = mids = None
        if class_csv is not None:
            from passt_lib.data.readers import read_class_csv

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
    """A checkpoint written by ``passt-study train`` as a ready :class:`AudioTagger`.

    ``expected`` are facts the caller relies on (``sample_rate=32000``, ``n_classes=527``,
    ``model_name="passt-s"``, ``task="multilabel"``, ``clip_seconds=10``): any the checkpoint
    contradicts is an error naming the fields. A checkpoint written before checkpoints
    described themselves (format 1), or saved in a coarse phase of a coarse-to-fine run, is
    an error saying what to do.
    """
    state = load_checkpoint(path)
    fmt = state.get("format", 1)
    if fmt < CHECKPOINT_FORMAT:
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
    """The model a self-describing checkpoint holds, built from its description."""
    from passt_lib.registry import create_model, model_info
    from passt_lib.scales import build_model

    name, cfg = state["model_name"], state["model_config"]
    if model_info(name).transformer:
        from passt_lib.model import PaSST, PaSSTConfig

        return PaSST(PaSSTConfig(**cfg))
    if cfg is not None:
        return create_model(name, **cfg)
    b = state["build"]  # a model without a config dataclass: rebuilt as training built it
    return build_model(name, b["scale"], b["n_classes"], **b["overrides"])


def describe(model: nn.Module, name: str, scale: str, n_classes: int, overrides: dict,
             mel_config: MelConfig, data, classes, mids, window_frames: int) -> dict:
    """The entries that make a checkpoint self-describing (``load_model`` reads them)."""
    from passt_lib.study.env import git_state

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


def read_audio_file(path: str | os.PathLike, sample_rate: int) -> tuple[torch.Tensor, dict]:
    """(mono waveform (S,) at ``sample_rate``, facts about the file: its rate, channels and
    what was done to it) for any file libsndfile reads."""
    import soundfile

    from passt_lib.frontend import load_audio

    path = Path(path)
    wave = load_audio(path, sample_rate)
    info = soundfile.info(str(path))
    notes = []
    if info.channels > 1:
        notes.append(f"downmixed from {info.channels} channels")
    if info.samplerate != sample_rate:
        notes.append(f"resampled from {info.samplerate} Hz")
    return wave, {"sample_rate": info.samplerate, "channels": info.channels,
                  "seconds": len(wave) / sample_rate, "notes": notes}
