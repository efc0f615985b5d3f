"""The PaSST models the authors released, by their architecture name.

Read from the authors' code: ``models/passt.py`` of github.com/kkoutini/PaSST (commit
2a5c818, 2024-01-12: ``default_cfgs`` and ``get_model``) and ``hear21passt/models/passt.py``
of github.com/kkoutini/passt_hear21 (commit 5f1cce6, version 0.0.26 on PyPI), the
front-end settings from their ``ex_*.py`` experiments and hear21passt's ``hop100base.py`` /
``hop160base.py`` / ``base20sec.py`` / ``base30sec.py``. Every released model is a distilled
ViT-B/16 (768 wide, 12 heads, 12 blocks; PaSST-L keeps 7) on 128 mel bins at 32 kHz; what
differs is the stride, the input length (frames), the STFT hop of its front-end and the
classes. Width, depth and heads are read from a checkpoint's tensors, so only these facts
live here.

``patchout`` is (s_patchout_t, s_patchout_f, u_patchout) as the authors' training recipe for
that model sets it, where the code records it; None where it does not (their ``get_model``
builds every model without patchout; it only matters for training).

Input lengths are those the authors' ``get_model`` builds each model with. For the OpenMIC
and FSD50K models their ``default_cfgs`` name other lengths (3200, 2000 frames) than
``get_model`` uses (998); the table follows ``get_model``, except for the OpenMIC-2008 PaSST-U
model, which only its config describes. No checkpoint was downloaded to check the tensors.

Load one with ``passt_lib.checkpoints.load_reference_checkpoint(path, arch=NAME)``.
"""

from __future__ import annotations

from dataclasses import dataclass

ASSET_URL = "https://github.com/kkoutini/PaSST/releases/download/"


@dataclass(frozen=True)
class ReleasedArch:
    name: str
    fstride: int
    tstride: int
    input_tdim: int  # frames the model was built for (the reference's img_size[1])
    n_classes: int
    asset: str  # the release asset, under ASSET_URL
    hop_length: int = 320  # STFT hop of the model's front-end, samples at 32 kHz
    clip_seconds: float = 10.0
    patchout: tuple[int, int, int] | None = None
    dataset: str = "audioset"
    input_fdim: int = 128

    @property
    def url(self) -> str:
        return ASSET_URL + self.asset


_AS = (40, 4, 0)  # the AudioSet recipe's structured patchout (ex_audioset.py)
_ARCHS = [
    ReleasedArch("passt_s_swa_p16_128_ap476", 10, 10, 998, 527,
                 "v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt", patchout=_AS),
    ReleasedArch("passt_s_kd_p16_128_ap486", 10, 10, 998, 527, "v.0.0.9/passt-s-kd-ap.486.pt",
                 patchout=_AS),
    ReleasedArch("passt_l_kd_p16_128_ap47", 10, 10, 998, 527, "v.0.0.10/passt-l-kd-ap.47.pt",
                 patchout=_AS),
    ReleasedArch("passt_s_swa_p16_128_ap4761", 10, 10, 998, 527,
                 "v0.0.2-audioset/passt-s-f128-p16-s10-ap.4761-swa.pt", patchout=_AS),
    ReleasedArch("passt_s_p16_128_ap472", 10, 10, 998, 527,
                 "v0.0.2-audioset/passt-s-f128-p16-s10-ap.472.pt", patchout=_AS),
    ReleasedArch("passt_s_p16_s16_128_ap468", 16, 16, 998, 527,
                 "v0.0.2-audioset/passt-s-f128-p16-s16-ap.468.pt"),
    ReleasedArch("passt_s_swa_p16_s16_128_ap473", 16, 16, 998, 527,
                 "v0.0.2-audioset/passt-s-f128-p16-s16-ap.473-swa.pt"),
    ReleasedArch("passt_s_swa_p16_s14_128_ap471", 14, 14, 998, 527,
                 "v0.0.2-audioset/passt-s-f128-p16-s14-ap.471-swa.pt"),
    ReleasedArch("passt_s_p16_s14_128_ap469", 14, 14, 998, 527,
                 "v0.0.2-audioset/passt-s-f128-p16-s14-ap.469.pt"),
    ReleasedArch("passt_s_swa_p16_s12_128_ap473", 12, 12, 998, 527,
                 "v0.0.2-audioset/passt-s-f128-p16-s12-ap.473-swa.pt"),
    ReleasedArch("passt_s_p16_s12_128_ap470", 12, 12, 998, 527,
                 "v0.0.2-audioset/passt-s-f128-p16-s12-ap.470.pt"),
    ReleasedArch("passt_s_swa_f128_stfthop100_p16_s10_ap473", 10, 10, 3200, 527,
                 "v0.0.3-audioset/passt-s-f128-stfthop100-p16-s10-ap.473-swa.pt",
                 hop_length=100),
    ReleasedArch("passt_s_swa_f128_stfthop160_p16_s10_ap473", 10, 10, 2000, 527,
                 "v0.0.3-audioset/passt-s-f128-stfthop160-p16-s10-ap.473-swa.pt",
                 hop_length=160),
    ReleasedArch("passt-s-f128-20sec-p16-s10-ap474-swa", 10, 10, 2000, 527,
                 "v0.0.5/passt-s-f128-20sec-p16-s10-ap.474-swa.pt", clip_seconds=20.0),
    ReleasedArch("passt-s-f128-30sec-p16-s10-ap473-swa", 10, 10, 3000, 527,
                 "v0.0.5/passt-s-f128-30sec-p16-s10-ap.473-swa.pt", clip_seconds=30.0),
    ReleasedArch("passt_b_f128_p16_s16_ap_459", 16, 16, 998, 527,
                 "v.0.0.7-audioset/passt-b-f128-p16-s16-ap.459.pt", patchout=(0, 0, 0)),
    ReleasedArch("passt_u600_f128_p16_s16_ap_460", 16, 16, 998, 527,
                 "v.0.0.7-audioset/passt-u600-f128-p16-s16-ap.460.pt", patchout=(0, 0, 600)),
    ReleasedArch("openmic2008_passt_u_f128_p16_s10_ap85_swa", 10, 10, 3200, 20,
                 "v0.0.4-openmic/openmic2008.passt-u-f128-p16-s10-ap.85-swa.pt",
                 dataset="openmic"),
    ReleasedArch("openmic_passt_s_f128_10sec_p16_s10_ap85", 10, 10, 998, 20,
                 "v0.0.5/openmic-passt-s-f128-10sec-p16-s10-ap.85.pt", patchout=_AS,
                 dataset="openmic"),
    ReleasedArch("fsd50k_passt_s_f128_p16_s10_ap655", 10, 10, 998, 200,
                 "v0.0.5/fsd50k-passt-s-f128-p16-s10-ap.655.pt", patchout=(10, 4, 0),
                 dataset="fsd50k"),
    ReleasedArch("fsd50k_passt_s_n_f128_p16_s16_ap642", 16, 16, 998, 200,
                 "v0.0.5/fsd50k-passt-s-n-f128-p16-s16-ap.642.pt", dataset="fsd50k"),
]
RELEASED: dict[str, ReleasedArch] = {a.name: a for a in _ARCHS}


def released(name: str) -> ReleasedArch:
    """The released architecture ``name``; an unknown name lists the known ones."""
    if name not in RELEASED:
        raise ValueError(f"unknown released PaSST architecture {name!r}; known: "
                         f"{', '.join(RELEASED)}")
    return RELEASED[name]
