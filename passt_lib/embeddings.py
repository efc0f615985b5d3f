"""Embeddings with the HEAR API (Turian et al. 2022), as ``hear21passt`` offers them.

    from passt_lib import embeddings
    model = embeddings.load_model("runs/s/checkpoint.pt")             # ours
    model = embeddings.load_model("passt-s-ap476.pt", arch="passt_s_swa_p16_128_ap476")
    scene = embeddings.get_scene_embeddings(audio, model)              # (B, D)
    emb, ts = embeddings.get_timestamp_embeddings(audio, model)       # (B, T, D), (B, T) ms

``audio`` is (B, S) float at ``model.sample_rate`` (32 kHz), any length. Every PaSST / AST
checkpoint works, ours (``passt-study train``) or the authors' (by released architecture
name, ``passt_lib.released``).

- Scene embedding: the clip embedding the classifier head reads, the mean of the class and
  distillation token outputs after the final norm (``PaSST.forward_embedding``), averaged
  over windows of the model's input length (10 s at the paper scale) every quarter window,
  as ``predict`` windows; D = the model width (768 for the released models).
- Timestamp embeddings: one per time patch, the final-norm outputs of that patch column's
  tokens averaged over the frequency rows (``PaSST.forward_tokens``), from windows of the
  model's length placed so that their patches tile the audio; the timestamp is the centre of
  the patch, so the hop is the time stride (``tstride`` frames: 100 ms at stride 10 with the
  10 ms STFT hop), and the first timestamp is half a patch in (80 ms). D = the model width. (``hear21passt`` instead
  runs the model on a 160 ms window every 50 ms; this reads every patch of one pass.)
"""

from __future__ import annotations

import torch

from passt_lib.grid import n_patches
from passt_lib.inference import AudioTagger, slide_windows
from passt_lib.inference import load_model as _load_checkpoint_model


class HearModel(AudioTagger):
    """An :class:`AudioTagger` of a PaSST / AST with the HEAR attributes."""

    @property
    def scene_embedding_size(self) -> int:
        return self.model.config.embed_dim

    @property
    def timestamp_embedding_size(self) -> int:
        return self.model.config.embed_dim


def load_model(model_file_path: str = "", arch: str | None = None, **kwargs) -> HearModel:
    """Our checkpoint, or with ``arch`` the authors' released weights of that architecture."""
    if arch is not None:
        tagger = AudioTagger.from_reference(model_file_path, arch, **kwargs)
    else:
        tagger = _load_checkpoint_model(model_file_path, **kwargs)
    if not hasattr(tagger.model, "forward_tokens"):
        raise ValueError(f"{model_file_path}: embeddings are defined for PaSST / AST models; "
                         f"this checkpoint holds {tagger.name!r}")
    tagger.__class__ = HearModel  # the same object, with the HEAR attributes
    return tagger


def _mel(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    if audio.dim() != 2:
        raise ValueError(f"HEAR audio is (n_sounds, n_samples); got shape {tuple(audio.shape)}")
    return model.mel(audio).unsqueeze(1)  # (B, 1, F, T), finiteness checked by the front-end


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, D): window embeddings averaged over each sound (see the module doc)."""
    mel = _mel(audio, model)
    windows, starts, _ = slide_windows(mel, model.window_frames, max(model.window_frames // 4, 1))
    emb = torch.cat([model.model.forward_embedding(w) for w in windows.split(16)])  # (B*W, D)
    return emb.view(len(audio), len(starts), -1).mean(dim=1).float().cpu()


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """((n_sounds, n_timestamps, D), timestamps (n_sounds, n_timestamps) in ms)."""
    mel = _mel(audio, model)
    b, t_in = len(audio), mel.shape[3]
    c = model.model.config
    f = c.grid[0]
    # Windows whose patches tile time: the hop is the window's time patches x the stride, so
    # the patch centres of consecutive windows continue at the same hop.
    hop = n_patches(model.window_frames, c.patch_size[1], c.tstride) * c.tstride
    windows, starts, _ = slide_windows(mel, model.window_frames, hop)
    tokens = torch.cat([model.model.forward_tokens(w)[:, 2:] for w in windows.split(16)])
    columns = tokens.view(len(windows), f, -1, c.embed_dim).mean(dim=1)  # (B*W, T, D)
    n_t = columns.shape[1]
    emb = columns.reshape(b, len(starts) * n_t, c.embed_dim)  # (B, W*T, D)
    centres = starts[:, None] + torch.arange(n_t) * c.tstride + c.patch_size[1] / 2  # (W, T)
    keep = centres.flatten() < t_in  # patches of the padding past the audio are dropped
    ts = centres.flatten()[keep] * (1000 * model.frame_seconds)  # (n_timestamps,) ms
    return emb[:, keep].float().cpu(), ts.float().expand(b, -1).clone()
