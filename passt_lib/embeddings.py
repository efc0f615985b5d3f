"""Embeddings with the HEAR API (Turian et al. 2022), as ``hear21passt`` offers them.

    from passt_lib import embeddings
    model = embeddings.load_model("runs/s/checkpoint.pt")             # ours (or an export)
    model = embeddings.load_model("passt-s-ap476.pt", arch="passt_s_swa_p16_128_ap476")
    scene = embeddings.get_scene_embeddings(audio, model)              # (B, D)
    emb, ts = embeddings.get_timestamp_embeddings(audio, model)       # (B, T, D), (B, T) ms

``audio`` is (B, S) float at ``model.sample_rate`` (32 kHz), any length. Every PaSST / AST
checkpoint works, ours (``passt-study train`` / ``export``) or the authors' (by released
architecture name, ``passt_lib.released``). Working memory beyond the input and the output
stays bounded: spectrograms are computed a batch of windows at a time
(``AudioTagger.window_outputs``).

- Scene embedding: the clip embedding the classifier head reads, the mean of the class and
  distillation token outputs after the final norm (``PaSST.forward_embedding``). Audio that
  adds no time patch beyond the model's window (up to 10 s at the paper scale) is one
  window, exactly as ``hear21passt`` runs it; longer audio is averaged over windows of the
  model's length every quarter window, the last ending at the audio's end
  (``passt_lib.windows``). ``hear21passt`` instead pads half a window of reflected audio at
  each end and hops 2.5 s, so beyond 10 s the two average over different windows.
  D = the model width (768 for the released models).
- Timestamp embeddings: the final-norm outputs of one time patch column's tokens, averaged
  over the frequency rows (``PaSST.forward_tokens``), every ``model.timestamp_hop_ms``
  (default 50 ms at stride 10, the longest hop up to 50 ms that divides the stride). The model's patches lie every ``tstride`` frames (100 ms at stride 10
  with the 10 ms STFT hop); a finer hop runs the patch grid again shifted by one hop and
  interleaves: 50 ms takes 2 passes over the audio, 100 ms one, 20 ms five (each pass costs
  what one pass of whole windows costs). Each timestamp is the exact centre of its patch
  (the mean of its frames' centres); half a patch of mirrored frames at each end places
  the first centre within one hop of the start (5 ms at stride 10, hop 50 ms) and the last
  within one hop of the end. Windows tile the patch columns (the last window ends on the
  last column), so every column is computed once with the model's full context.
  ``hear21passt`` runs the model on a 160 ms window every 50 ms instead.
"""

from __future__ import annotations

import torch

from passt_lib.grid import n_patches
from passt_lib.inference import AudioTagger, TensorSource
from passt_lib.inference import load_model as load_tagger
from passt_lib.windows import column_starts

MAX_DEFAULT_HOP_MS = 50.0  # HEAR's event tasks score onsets within 50 ms


class HearModel(AudioTagger):
    """An :class:`AudioTagger` of a PaSST / AST with the HEAR attributes and the hop of its
    timestamp embeddings (``timestamp_hop_ms``: a whole number of frames dividing the
    model's time stride; by default the longest such hop up to 50 ms: 50 ms at stride 10,
    40 ms at strides 12 and 16)."""

    def __init__(self, tagger: AudioTagger, timestamp_hop_ms: float | None = None) -> None:
        super().__init__(tagger.model, tagger.frontend.config, classes=tagger.classes,
                         mids=tagger.mids, task=tagger.task, name=tagger.name,
                         window_frames=tagger.window_frames)
        if not hasattr(self.model, "forward_tokens"):
            raise ValueError(f"embeddings are defined for PaSST / AST models; this model is "
                             f"{tagger.name!r}")
        stride = self.model.config.tstride
        frame_ms = 1000 * self.frame_seconds
        if timestamp_hop_ms is None:
            timestamp_hop_ms = frame_ms * max(d for d in range(1, stride + 1) if stride % d == 0
                                              and d * frame_ms <= MAX_DEFAULT_HOP_MS + 1e-9)
        hop = timestamp_hop_ms / frame_ms
        if not (hop >= 1 and abs(hop - round(hop)) < 1e-6 and stride % round(hop) == 0):
            choices = [f"{d * frame_ms:g}" for d in range(1, stride + 1) if stride % d == 0]
            raise ValueError(f"timestamp_hop_ms must be a whole number of {frame_ms:g} ms frames "
                             f"dividing the time stride of {stride} frames: one of "
                             f"{', '.join(choices)}; got {timestamp_hop_ms:g}")
        self.timestamp_hop_ms = float(timestamp_hop_ms)
        self.timestamp_hop_frames = round(hop)

    @property
    def scene_embedding_size(self) -> int:
        return self.model.config.embed_dim

    @property
    def timestamp_embedding_size(self) -> int:
        return self.model.config.embed_dim


def load_model(model_file_path: str = "", arch: str | None = None,
               timestamp_hop_ms: float | None = None, **kwargs) -> HearModel:
    """Our checkpoint or exported folder, or with ``arch`` the authors' released weights of
    that architecture; timestamp embeddings every ``timestamp_hop_ms`` (default: 50 ms at
    stride 10; ``timestamp_hop_ms=100`` gives one per patch column at half the cost; see the
    module doc)."""
    if arch is not None:
        tagger = AudioTagger.from_reference(model_file_path, arch, **kwargs)
    else:
        tagger = load_tagger(model_file_path, **kwargs)
    return HearModel(tagger, timestamp_hop_ms)


def _source(audio: torch.Tensor) -> TensorSource:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
        raise ValueError(f"HEAR audio is (n_sounds, n_samples); got shape "
                         f"{tuple(getattr(audio, 'shape', ()))}")
    return TensorSource(audio)


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel,
                         batch_size: int = 16) -> torch.Tensor:
    """(n_sounds, D): window embeddings averaged over each sound (see the module doc)."""
    source = _source(audio)
    total = model.frontend.n_frames(source.n_samples)
    starts, length = model.time_grid.starts(total, max(model.window_frames // 4, 1))
    acc = torch.zeros(source.n_sounds, model.scene_embedding_size, dtype=torch.float64)
    for _, emb in model.window_outputs(source, starts, length, model.model.forward_embedding,
                                       batch_size):
        acc += emb.double().sum(dim=1)  # (B, D)
    return (acc / len(starts)).float()


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel, batch_size: int = 16
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """((n_sounds, n_timestamps, D), timestamps (n_sounds, n_timestamps) in ms, float32)."""
    source = _source(audio)
    c = model.model.config
    patch, stride, hop = c.patch_size[1], c.tstride, model.timestamp_hop_frames
    k = stride // hop  # interleaved patch grids
    # Timestamp n is the patch starting at frame s0 + n * hop (frames before 0 and past the
    # end mirror the audio); its centre is s0 + n * hop + (patch - 1) / 2 frames.
    s0 = -((patch - 1) // 2)
    end = source.n_samples / model.frontend.config.hop_length  # the audio's end, in frames
    n = int((end - s0 - (patch - 1) / 2) // hop) + 1
    out = torch.empty(source.n_sounds, n, c.embed_dim)
    per_window = n_patches(model.window_frames, patch, stride)
    for j in range(k):  # the grid shifted by j hops holds timestamps j, j + k, j + 2k, ...
        cols = len(range(j, n, k))
        if cols == 0:
            continue
        width = cols if model.time_grid.fits((cols - 1) * stride + patch) else per_window
        first = column_starts(cols, width)
        length = (width - 1) * stride + patch
        starts = [s0 + j * hop + f * stride for f in first]
        done = 0  # columns of this grid written so far
        for i, tokens in model.window_outputs(source, starts, length, model.model.forward_tokens,
                                              batch_size):
            # (B, w, 2 + F * T, D) -> per window, the frequency mean of each time column
            columns = tokens[:, :, 2:].unflatten(2, (c.grid[0], width)).mean(dim=2)  # (B,w,T,D)
            for w in range(columns.shape[1]):
                f = first[i + w]
                new = range(max(done, f), f + width)
                out[:, [j + k * m for m in new]] = columns[:, w, [m - f for m in new]]
                done = f + width
    centres = (s0 + torch.arange(n, dtype=torch.float64) * hop + (patch - 1) / 2)
    ts = (centres * 1000 * model.frame_seconds).float()
    return out, ts.expand(source.n_sounds, -1).clone()
