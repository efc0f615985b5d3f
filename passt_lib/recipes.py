"""The paper's downstream fine-tuning recipes as named configurations.

One :class:`Recipe` per task holds the authors' settings, read from their ``ex_esc50.py``,
``ex_openmic.py`` and ``ex_fsd50k.py`` (github.com/kkoutini/PaSST at 2a5c818), and the
points where this project departs from them. :func:`recipe_config` turns a recipe, a dataset
folder and a scale into the ``TrainConfig`` that ``train(config)`` runs; ``passt-study
finetune`` (``passt_lib.finetune``) and the notebooks call it.

Scales. At ``paper`` scale a recipe is the authors' run: their epochs, batch, learning rate
and schedule, full-length clips. At the smaller scales the scale sets the budget (epochs,
batch, learning rate, warm-up, clips per epoch) and the clip length (the recipe's, cut to the
scale's), and the recipe's patchout and SpecAugment amounts, defined on the recipe's clips,
are carried to the smaller input in proportion.

Weights. Without ``init`` a recipe starts from the released ``passt_s_swa_p16_128_ap476``
(``released_cache``: downloaded once, or an error naming the file and where to put it).
From released weights the model takes the weights' architecture (width, depth, strides,
128 mel bins, 998 frames) at every scale; from a checkpoint of ``passt-study train`` the
model is the scale's, as the checkpoint's run had it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from passt_lib.checkpoints import infer_config, read_state_dict, strip_prefixes
from passt_lib.data import embedded
from passt_lib.data.config import DataConfig
from passt_lib.frontend import MelConfig, n_frames
from passt_lib.grid import patch_grid
from passt_lib.patchout import rescale_amounts
from passt_lib.released import released
from passt_lib.released_cache import released_weights
from passt_lib.scales import get_scale
from passt_lib.train_config import TrainConfig, apply_sets

DEFAULT_WEIGHTS = "passt_s_swa_p16_128_ap476"
PATCH = 16


@dataclass(frozen=True)
class Recipe:
    """A downstream task as the authors fine-tune on it (epochs are counted from 1)."""

    name: str
    title: str
    paper: str  # the paper's result
    metric: str  # the score a run reports: "eval_accuracy" or "eval_map"
    n_classes: int
    task: str
    clip_seconds: float
    epochs: int
    batch_size: int
    lr: float
    warmup_epochs: float
    decay: tuple[float, float]  # (first epoch, epochs) of the linear decay to 1% of lr
    patchout: tuple[int, int]  # (s_patchout_t, s_patchout_f) on the recipe's clips
    specaugment: tuple[int, int]  # (freqm, timem) in mel bins and frames
    wave_mixup: float  # fraction of a batch mixed (0: off)
    swa_start_epoch: int
    select: str = "last"
    label_mask: bool = False
    folds: int = 0  # folds of the dataset (0: fixed splits)
    layouts: tuple[str, ...] = ()
    departures: tuple[str, ...] = ()


COMMON_DEPARTURES = (
    "clips are shuffled every epoch (the reference trains ESC-50 and OpenMIC in file order, "
    "shuffle=None)",
    "the warm-up is linear, not exponential",
    "the weight average is updated after every epoch from its first epoch on, and both the "
    "averaged and the last model are evaluated and reported under their own names (the "
    "reference's swa_acc reports the non-averaged accuracy)",
    "roll shifts clips by up to 50 samples either way as the reference does, in training only",
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("esc50", "ESC-50 (5-fold environmental sound classification)",
           "96.8% accuracy (PaSST-S, mean of 5 folds)", "eval_accuracy", 50, "singlelabel",
           5.0, 10, 12, 1e-5, 5, (50, 50), (10, 3), (48, 80), 0.0, 3, folds=5,
           layouts=("DIR/meta/esc50.csv with DIR/audio/*.wav (44.1 kHz, the download) or "
                    "DIR/audio_32k/*.wav (the authors' 32 kHz copy)",
                    "a folder-format CSV (filename, labels, fold)"),
           departures=COMMON_DEPARTURES),
    Recipe("openmic", "OpenMIC-2018 (20 instruments, masked labels)", ".843 mAP (PaSST-S)",
           "eval_map", 20, "multilabel", 10.0, 10, 6, 1e-5, 5, (50, 50), (40, 4), (48, 192),
           0.5, 3, label_mask=True,
           layouts=("DIR/openmic_train.csv_mp3.hdf and DIR/openmic_test.csv_mp3.hdf (the "
                    "authors' HDF5: target = 20 labels then 20 masks; also under DIR/mp3/)",
                    "DIR/openmic-2018.npz with DIR/partitions/split01_{train,test}.csv and "
                    "DIR/audio/ (the download)"),
           departures=COMMON_DEPARTURES + (
               "the masked BCE is averaged over the labelled (clip, class) pairs, not over all "
               "B x 20 entries",
               "mixup multiplies the two clips' masks: a mixed pair counts only where both "
               "clips are labelled (the reference computes the partner's mask and drops it)",
               "the download is read directly, downmixed to mono (the reference's preparation "
               "script keeps stereo and uses np.int, gone from NumPy)",
               "AUC, like AP, is computed per class over its labelled clips")),
    Recipe("fsd50k", "FSD50K (200 classes)", ".653 mAP (PaSST-S), .642 (PaSST-S-N)",
           "eval_map", 200, "multilabel", 10.0, 50, 12, 1e-5, 5, (10, 10), (10, 4), (0, 0),
           0.5, 11, select="best",
           layouts=("DIR/FSD50K.{train,val,eval}_mp3.hdf (the authors' HDF5, packed targets; "
                    "also under DIR/mp3/)",
                    "DIR/FSD50K.ground_truth/{dev,eval,vocabulary}.csv with "
                    "DIR/FSD50K.dev_audio/ and DIR/FSD50K.eval_audio/ (the download)"),
           departures=COMMON_DEPARTURES + (
               "the weights are averaged after every epoch from epoch 11, not every third",
               "the epoch is chosen on val and eval is reported at that epoch (the reference "
               "logs both every epoch and leaves the choice to the reader)")),
    Recipe("keywords", "embedded keywords (spoken digits), 5 folds by voice",
           "none (the embedded scale's own task)", "eval_accuracy", 10, "singlelabel", 2.0,
           10, 12, 1e-5, 5, (50, 50), (10, 3), (48, 80), 0.0, 3, folds=5,
           layouts=("none: the embedded keywords dataset (built once), both splits, dealt to "
                    "five folds by voice",),
           departures=("fine-tunes with ESC-50's settings (single-label, five folds)",)),
)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return RECIPES[name]


# --------------------------------------------------------------------------------------------
# The data of a recipe
# --------------------------------------------------------------------------------------------
def _first(root: Path, *names: str) -> Path | None:
    for folder in (root, root / "mp3"):
        hits = [folder / n for n in names]
        if all(p.is_file() for p in hits):
            return folder
    return None


def recipe_data(recipe: Recipe, data: str | Path | None, *, clip_seconds: float,
                fold: int | None = None, scale: str = "paper") -> DataConfig:
    """The ``DataConfig`` of ``recipe`` for the dataset at ``data``, in whichever of the
    recipe's layouts it is (``Recipe.layouts``); anything else names those layouts."""
    base = dict(n_classes=recipe.n_classes, task=recipe.task, clip_seconds=clip_seconds,
                label_mask=recipe.label_mask, name=recipe.name)
    if recipe.folds:
        base.update(fold=fold or 1, n_folds=recipe.folds)
    elif fold is not None:
        raise ValueError(f"{recipe.name} has fixed splits, not folds; drop --folds")
    if recipe.name == "keywords":
        d = embedded.ensure(scale if scale != "paper" else "embedded", task="keywords",
                            progress=False)
        return d.replace(train_path=(d.train_paths[0], d.eval_path), eval_path="",
                         test_path=None, fold_column="sources", clip_seconds=d.clip_seconds,
                         fold=base["fold"], n_folds=recipe.folds, name="keywords-folds")
    if data is None:
        raise ValueError(f"the {recipe.name} recipe needs --data: "
                         + "; or ".join(recipe.layouts))
    root = Path(data)
    if recipe.name == "esc50":
        if root.is_file() and root.suffix == ".csv":
            return DataConfig.from_dict({**base, "format": "folder", "train_path": str(root),
                                         "n_classes": 0})
        if (root / "meta" / "esc50.csv").is_file():
            return DataConfig.from_dict({**base, "format": "esc50", "train_path": str(root)})
    elif recipe.name == "openmic":
        folder = _first(root, "openmic_train.csv_mp3.hdf", "openmic_test.csv_mp3.hdf")
        if folder is not None:
            return DataConfig.from_dict({**base, "format": "passt-hdf5",
                                         "train_path": str(folder / "openmic_train.csv_mp3.hdf"),
                                         "eval_path": str(folder / "openmic_test.csv_mp3.hdf")})
        if (root / "openmic-2018.npz").is_file():
            return DataConfig.from_dict({**base, "format": "openmic-npz",
                                         "train_path": f"{root}#train",
                                         "eval_path": f"{root}#test"})
    elif recipe.name == "fsd50k":
        names = ("FSD50K.train_mp3.hdf", "FSD50K.val_mp3.hdf", "FSD50K.eval_mp3.hdf")
        folder = _first(root, *names)
        if folder is not None:
            tr, va, ev = (str(folder / n) for n in names)
            return DataConfig.from_dict({**base, "format": "passt-hdf5", "train_path": tr,
                                         "eval_path": va, "test_path": ev})
        if (root / "FSD50K.ground_truth").is_dir():
            return DataConfig.from_dict({**base, "format": "fsd50k",
                                         "train_path": f"{root}#train",
                                         "eval_path": f"{root}#val",
                                         "test_path": f"{root}#eval"})
    raise FileNotFoundError(f"{str(root)!r} is in none of the {recipe.name} layouts: "
                            + "; or ".join(recipe.layouts))


# --------------------------------------------------------------------------------------------
# The model and its budget at a scale
# --------------------------------------------------------------------------------------------
def released_geometry(path: str | Path, arch: str) -> dict:
    """``PaSSTConfig`` fields that make a model fit the released weights at ``path``: the
    width, depth and heads of its tensors, the architecture's strides and input size."""
    a = released(arch)
    sd = strip_prefixes(read_state_dict(path))
    cfg = infer_config(sd, fstride=a.fstride, tstride=a.tstride, input_tdim=a.input_tdim,
                       input_fdim=a.input_fdim)
    keys = ("embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "fstride", "tstride",
            "input_fdim", "input_tdim", "time_positions")
    return {k: getattr(cfg, k) for k in keys if getattr(cfg, k, None) is not None}


def _frames(seconds: float) -> int:
    return n_frames(MelConfig(), int(round(32000 * seconds)))  # every recipe's front-end


def scaled_augmentation(recipe: Recipe, clip_seconds: float, n_mels: int,
                        stride: tuple[int, int]) -> tuple[dict, dict]:
    """(patchout fields, SpecAugment fields) of ``recipe`` carried from its clips (128 mel
    bins) to ``clip_seconds`` and ``n_mels`` in proportion."""
    full = patch_grid(128, _frames(recipe.clip_seconds), (PATCH, PATCH), stride)
    here = patch_grid(n_mels, _frames(clip_seconds), (PATCH, PATCH), stride)
    t, f = recipe.patchout
    patchout = rescale_amounts({"s_patchout_t": t, "s_patchout_f": f}, here, full,
                               where=f"{recipe.name} at {n_mels} x {_frames(clip_seconds)}: "
                                     "the grid has")
    freqm, timem = recipe.specaugment
    masks = {"freqm": round(freqm * n_mels / 128),
             "timem": round(timem * _frames(clip_seconds) / _frames(recipe.clip_seconds))}
    return patchout, masks


def recipe_config(name: str, data: str | Path | None = None, *, scale: str = "paper",
                  fold: int | None = None, out_dir: str | Path | None = None,
                  sets: tuple[str, ...] | list[str] = (), cache: str | Path | None = None,
                  download=None) -> TrainConfig:
    """The ``TrainConfig`` of recipe ``name`` on the dataset at ``data`` (see the module doc).

    ``sets`` are ``--set key=value`` strings applied on top (``init=``, ``init_arch=``,
    ``lr=``, ``data.FIELD=`` ...). ``cache`` and ``download`` go to
    ``released_cache.released_weights`` when the default weights are needed.
    """
    r = get_recipe(name)
    sc = get_scale(scale)
    paper = sc.name == "paper"
    clip = r.clip_seconds if paper else min(r.clip_seconds, sc.clip_seconds)
    d = recipe_data(r, data, clip_seconds=clip, fold=fold, scale=sc.name)
    clip = d.clip_seconds
    augment = dict(wave_mixup=r.wave_mixup, spec_mixup_alpha=0.3, gain_db=7.0, roll=True,
                   roll_fraction=50 / (32000 * clip), balanced=False)
    if not paper:
        augment["num_samples"] = sc.n_train  # a small scale trains on a few clips per epoch
    d = d.replace(**augment)
    base = {"model": "passt-s", "scale": sc.name, "data": d.to_dict(), "weight_decay": 1e-4,
            "select": r.select, "out_dir": str(out_dir or Path("results") / "finetune" / name)}
    if paper:
        base.update(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr,
                    warmup_epochs=r.warmup_epochs, decay_start_epoch=r.decay[0],
                    decay_epochs=r.decay[1], swa_start_epoch=r.swa_start_epoch)
    else:
        base["swa_start_epoch"] = max(1, round(sc.epochs * r.swa_start_epoch / r.epochs))
    cfg = apply_sets(base, list(sets))
    if cfg.get("init") is None:
        if r.name == "keywords":
            raise ValueError("the keywords recipe fine-tunes from a checkpoint of the embedded "
                             "mixtures task: --set init=runs/pre/checkpoint.pt (from "
                             "`passt-study train --preset passt-s --out runs/pre`)")
        cfg["init"] = str(released_weights(DEFAULT_WEIGHTS, cache, download))
        cfg["init_arch"] = DEFAULT_WEIGHTS
    geometry = released_geometry(cfg["init"], cfg["init_arch"]) if cfg.get("init_arch") else {}
    n_mels = geometry.get("input_fdim", sc.n_mels)
    stride = (geometry.get("fstride", 10), geometry.get("tstride", 10))
    patchout, masks = scaled_augmentation(r, clip, n_mels, stride)
    cfg["model_overrides"] = {**geometry, **patchout, **cfg.get("model_overrides", {})}
    cfg["mel_overrides"] = {**masks, **cfg.get("mel_overrides", {})}
    return TrainConfig.from_dict(cfg)


def describe(recipe: Recipe) -> dict:
    """A recipe's settings as plain values (for tables and the README)."""
    return dataclasses.asdict(recipe)
