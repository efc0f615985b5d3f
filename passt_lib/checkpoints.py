"""Checkpoints: training state, reference PaSST weights and ImageNet (DeiT) initialisation.

- :func:`save_checkpoint` / :func:`load_checkpoint`: the training state ``train`` writes
  every epoch (model, optimiser, RNG, history, config), written atomically.

Converters are pure ``state_dict -> state_dict`` functions; loaders build the
model and load strictly. A missing or unexpected key is an error listing them.

- :func:`load_reference_checkpoint`: the authors' PaSST repository and
  ``hear21passt`` layout, with or without Lightning prefixes (``net.``,
  ``net_swa.``). Width, depth, heads and classes come from the tensors.
- :func:`convert_deit_state_dict`: timm ``deit_*_distilled_patch16_*`` to
  PaSST (disentangled encodings) or AST (flat encoding).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F

from passt_lib.atomic import atomic_write_bytes
from passt_lib.compression import transfer_state_dict
from passt_lib.model import PaSST, PaSSTConfig
from passt_lib.released import released

# Format of the checkpoints ``passt-study train`` writes: 3 = the CNN baselines' front-end as
# one ``mel`` field of their config; 2 = self-describing (model, front-end, classes, task,
# commit: ``inference.describe``), with (frequency, time) patch sizes, the CNNs' front-end
# fields flat in their config (``frontend.with_front_end`` folds them in as they load);
# 1 (no "format" entry) = training state only, still resumable.
CHECKPOINT_FORMAT = 3
DESCRIBED_FROM = 2  # the first format that describes its model
PREFIXES = ("net.", "net_swa.")
# Present in reference checkpoints but unused by the reference's forward.
IGNORED_REFERENCE_KEYS = ("head_dist.weight", "head_dist.bias")
DEIT_NAME = "deit_base_distilled_patch16_384"


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write a training state atomically: tensors and plain containers only (dict, list, tuple,
    str, int, float, bool, None), so that :func:`load_checkpoint` reads it without unpickling
    code. Anything else is an error naming where it sits."""
    _check_plain(state, "state")
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A training state written by :func:`save_checkpoint`, read with ``weights_only=True``: a
    file holding any other Python object is refused, never run (see :func:`convert_checkpoint`
    for files of older versions)."""
    state = torch_load(path, weights_only=True)
    if not isinstance(state, Mapping) or "model" not in state:
        raise ValueError(f"{os.fspath(path)} is a PyTorch file but not a training checkpoint "
                         f"of passt-study (no 'model' entry)")
    return dict(state)


def torch_load(path: str | os.PathLike, *, weights_only: bool = True):
    """``torch.load`` onto the CPU; a missing, truncated or foreign file is an error naming it.

    Only :func:`convert_checkpoint` with ``trust=True`` turns ``weights_only`` off.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path!r} is a folder; give the .pt / .ckpt file")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise ValueError(
                f"checkpoint {path!r} holds Python objects besides tensors and plain values; "
                f"loading them would run code the file names, so it is refused. A checkpoint "
                f"of an older passt-study version (NumPy RNG state) converts with `passt-study "
                f"convert-checkpoint {path} NEW.pt --trust` if you made it or trust who did; "
                f"other weights: save their state_dict() and load that") from exc
        raise ValueError(f"cannot read checkpoint {path!r}: the file is truncated or not a "
                         f"PyTorch checkpoint ({' '.join(str(exc).split())[:120]})") from exc
    except (RuntimeError, EOFError, KeyError, ValueError) as exc:
        raise ValueError(f"cannot read checkpoint {path!r}: the file is truncated or not a "
                         f"PyTorch checkpoint ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:120]})") from exc


PLAIN = (torch.Tensor, str, int, float, bool, type(None))


def _check_plain(obj, where: str) -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, PLAIN):
        raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; a "
                        f"checkpoint holds tensors and plain values only")


def to_plain(obj):
    """``obj`` with NumPy arrays and scalars as tensors and numbers, dataclasses as dicts and
    paths as strings; any other object is an error naming its type."""
    if isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj) if type(obj) in (list, tuple) else \
            [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.astype(np.int64) if obj.dtype == np.uint32 else obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store a {type(obj).__module__}.{type(obj).__qualname__} as a "
                    f"plain value")


def convert_checkpoint(old: str | os.PathLike, new: str | os.PathLike, *,
                       trust: bool = False) -> dict:
    """Rewrite a checkpoint of an older passt-study version so that it loads safely.

    Reading the old file unpickles it, which runs any code the file names: only with
    ``trust=True``, for files you made or trust (``passt-study convert-checkpoint OLD NEW
    --trust`` is this function). The NumPy RNG state and any other NumPy values become
    tensors and numbers; the result is checked to load with ``weights_only=True`` and
    written to ``new`` atomically. Returns the converted state.
    """
    if not trust:
        raise ValueError(f"converting {os.fspath(old)!r} unpickles it, which runs any code the "
                         f"file holds; pass trust=True (--trust) only for a checkpoint you "
                         f"made or whose source you trust")
    state = torch_load(old, weights_only=not trust)  # trusted: the one unpickling load
    if not isinstance(state, Mapping) or "model" not in state:
        raise ValueError(f"{os.fspath(old)} is not a training checkpoint of passt-study "
                         f"(no 'model' entry)")
    try:
        state = to_plain(dict(state))
    except TypeError as exc:
        raise ValueError(f"cannot convert {os.fspath(old)}: {exc}") from exc
    if os.path.abspath(old) == os.path.abspath(new):
        raise ValueError(f"write the converted checkpoint to a new file, not over {old}")
    save_checkpoint(new, state)
    load_checkpoint(new)  # the point of converting: it now loads without unpickling code
    return state


# --------------------------------------------------------------------------------------------
# Exported models: model.safetensors + model.json
# --------------------------------------------------------------------------------------------
WEIGHTS_FILE, DESCRIPTION_FILE = "model.safetensors", "model.json"


def export_model(state: Mapping, folder: str | os.PathLike, described: tuple[str, ...],
                 source: str = "the checkpoint") -> Path:
    """Write the model of a self-describing checkpoint ``state`` as ``folder/model.safetensors``
    (the weights) and ``folder/model.json`` (the entries named in ``described``, plus format
    and commit): a form to share that holds no code at all. Returns the folder."""
    missing = [k for k in described if k not in state]
    if missing:
        raise ValueError(f"{source} does not describe its model (no "
                         f"{', '.join(missing)}): only checkpoints of format "
                         f"{DESCRIBED_FROM} or later export")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous() for k, v in state["model"].items()}
    atomic_write_bytes(folder / WEIGHTS_FILE, safetensors.torch.save(weights))
    keys = ("format", *described, "mids", "window_frames", "build", "commit", "phase_full")
    description = {k: state[k] for k in keys if k in state}
    atomic_write_bytes(folder / DESCRIPTION_FILE,
                       (json.dumps(description, indent=1) + "\n").encode())
    return folder


def read_exported(folder: str | os.PathLike) -> dict:
    """An exported folder as the dict :func:`load_checkpoint` gives (description and
    ``model``); JSON lists become tuples again, as the configs hold them."""
    folder = Path(folder)
    missing = [n for n in (WEIGHTS_FILE, DESCRIPTION_FILE) if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"{os.fspath(folder)} is a folder but not an exported model: it has "
                         f"no {' or '.join(missing)} (passt-study export writes both)")
    try:
        state = json.loads((folder / DESCRIPTION_FILE).read_text(), object_hook=_tuples)
        state["model"] = safetensors.torch.load_file(str(folder / WEIGHTS_FILE))
    except (json.JSONDecodeError, safetensors.SafetensorError) as exc:
        raise ValueError(f"cannot read the exported model in {os.fspath(folder)}: "
                         f"{' '.join(str(exc).split())[:160]}") from exc
    return state


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) and k not in ("classes", "mids") else v
            for k, v in d.items()}


def _check_keys(got: set[str], expected: set[str], what: str, allow_missing: set[str] = frozenset()):
    missing = sorted(expected - got - allow_missing)
    unexpected = sorted(got - expected)
    if missing or unexpected:
        raise ValueError(f"{what}: missing keys {missing}; unexpected keys {unexpected}")


def read_state_dict(source: str | os.PathLike | Mapping[str, torch.Tensor]
                    ) -> dict[str, torch.Tensor]:
    """The tensors of a state dict or of a file holding one (read with ``weights_only=True``),
    out of a Lightning ``state_dict`` or DeiT ``model`` wrapper."""
    if isinstance(source, (str, os.PathLike)):
        source = torch_load(source, weights_only=True)
    if not isinstance(source, Mapping):
        raise ValueError(f"expected a state dict or a path, got {type(source).__name__}")
    for wrapper in ("state_dict", "model"):  # Lightning / DeiT checkpoint wrappers
        if wrapper in source and isinstance(source[wrapper], Mapping):
            source = source[wrapper]
    return dict(source)


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefer: str = "net") -> dict:
    """Keep the keys of one Lightning sub-module (``net.`` or ``net_swa.``), prefix removed.

    Without any such prefix the state dict is returned unchanged. With both,
    ``prefer`` ("net" or "net_swa") picks one; with only one, that one is used.
    """
    if prefer not in ("net", "net_swa"):
        raise ValueError(f"prefer must be 'net' or 'net_swa', got {prefer!r}")
    present = [p for p in PREFIXES if any(k.startswith(p) for k in state_dict)]
    if not present:
        return dict(state_dict)
    prefix = prefer + "." if prefer + "." in present else present[0]
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def infer_config(state_dict: Mapping[str, torch.Tensor], *, fstride: int, tstride: int,
                 input_tdim: int, input_fdim: int = 128, num_heads: int | None = None,
                 **overrides) -> PaSSTConfig:
    """A PaSSTConfig matching the tensors of a reference-layout state dict.

    The reference sizes its encodings ``input // stride`` per axis, one more time position
    than there are time patches at some strides (stride 12 at 998 frames: 83 for 82); such a
    checkpoint loads with ``time_positions`` set and runs as the reference runs it.
    """
    for key in ("cls_token", "patch_embed.proj.weight", "head.1.weight", "blocks.0.mlp.fc1.weight"):
        if key not in state_dict:
            raise ValueError(f"not a PaSST state dict: key {key!r} is missing; "
                             f"it has {sorted(state_dict)[:20]}...")
    d = state_dict["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks."))
    patch = state_dict["patch_embed.proj.weight"].shape[-1]
    flat = "pos_embed" in state_dict
    cfg = PaSSTConfig(
        embed_dim=d,
        depth=depth,
        num_heads=num_heads or max(1, d // 64),  # ViT/DeiT convention: 64-dim heads
        mlp_ratio=state_dict["blocks.0.mlp.fc1.weight"].shape[0] / d,
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
        patch_size=patch,
        fstride=fstride,
        tstride=tstride,
        input_fdim=input_fdim,
        input_tdim=input_tdim,
        n_classes=state_dict["head.1.weight"].shape[0],
        pos_embed="flat" if flat else "disentangled",
    )
    f, t = cfg.grid
    if flat:
        n = state_dict["pos_embed"].shape[1]
        if n != f * t:
            raise ValueError(f"pos_embed has {n} positions but {input_fdim}x{input_tdim} at stride "
                             f"({fstride}, {tstride}) gives a {f}x{t} = {f * t} grid")
    else:
        f_ck = state_dict["freq_new_pos_embed"].shape[2]
        t_ck = state_dict["time_new_pos_embed"].shape[3]
        t_ref = input_tdim // tstride  # the reference's sizing
        if f_ck != f or t_ck not in (t, t_ref) or t_ck < t:
            raise ValueError(
                f"the checkpoint's encodings are for a {f_ck}x{t_ck} patch grid but "
                f"{input_fdim}x{input_tdim} at stride ({fstride}, {tstride}) gives {f}x{t} "
                f"({input_fdim // fstride}x{t_ref} as the reference sizes them); pass the "
                "fstride/tstride/input_tdim it was trained with, or arch= a released name "
                "(passt_lib.released)")
        if t_ck != t:
            cfg = dataclasses.replace(cfg, time_positions=t_ck)
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def load_reference_checkpoint(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    arch: str | None = None,
    *,
    fstride: int | None = None,
    tstride: int | None = None,
    input_tdim: int | None = None,
    input_fdim: int = 128,
    prefer: str = "net",
    num_heads: int | None = None,
    **overrides,
) -> PaSST:
    """Build a PaSST from reference weights (a path or a state dict), loaded strictly.

    ``arch`` is a released architecture name (``passt_lib.released``, e.g.
    "passt_s_p16_s12_128_ap470") giving the strides and the input size; without it give
    ``fstride``, ``tstride`` and ``input_tdim``. Width, depth and classes come from the
    tensors. ``overrides`` go to the config (e.g. patchout amounts for fine-tuning).
    """
    if arch is not None:
        a = released(arch)
        fstride, tstride, input_tdim, input_fdim = a.fstride, a.tstride, a.input_tdim, \
            a.input_fdim
    if None in (fstride, tstride, input_tdim):
        raise ValueError("give arch= a released architecture name, or fstride, tstride and "
                         f"input_tdim; got fstride={fstride}, tstride={tstride}, "
                         f"input_tdim={input_tdim}")
    sd = strip_prefixes(read_state_dict(source), prefer=prefer)
    sd = {k: v for k, v in sd.items() if k not in IGNORED_REFERENCE_KEYS}
    cfg = infer_config(sd, fstride=fstride, tstride=tstride, input_tdim=input_tdim,
                       input_fdim=input_fdim, num_heads=num_heads, **overrides)
    model = PaSST(cfg)
    _check_keys(set(sd), set(model.state_dict()), "reference checkpoint does not fit PaSST")
    model.load_state_dict(sd)
    return model


def initial_weights(model: torch.nn.Module, source: str | os.PathLike,
                    arch: str | None = None) -> list[str]:
    """Load the weights of ``source`` into ``model`` to fine-tune from them.

    ``source`` is a checkpoint of ``passt-study train``, or with ``arch`` the authors'
    released weights of that architecture (``passt_lib.released``). Where the two models'
    inputs differ, the time encoding is resampled and the patch embedding resized
    (``compression.transfer_state_dict``, as between coarse-to-fine phases); where their
    classes differ, the head is left as initialised. Any other difference (width, depth,
    frequency bins) is an error naming the tensors. Returns what was adapted.
    """
    if arch is not None:
        src = load_reference_checkpoint(source, arch)
        sd, src_config = src.state_dict(), src.config
    else:
        state = load_checkpoint(source)
        sd, src_config = state["model"], state.get("model_config")
        if src_config is not None and "pos_embed" in src_config:
            src_config = PaSSTConfig(**src_config)
    notes = []
    if isinstance(src_config, PaSSTConfig) and isinstance(getattr(model, "config", None),
                                                          PaSSTConfig):
        if src_config.pos_grid != model.config.pos_grid:
            notes.append(f"encodings resampled from {src_config.pos_grid} to "
                         f"{model.config.pos_grid} positions")
        sd = transfer_state_dict(sd, src_config, model.config)
    target = model.state_dict()
    n_src, n_dst = _n_outputs(sd), model.n_classes
    head = [k for k in sd if k in target and sd[k].shape != target[k].shape
            and sd[k].shape[:1] == (n_src,) and target[k].shape[:1] == (n_dst,)
            and sd[k].shape[1:] == target[k].shape[1:]]
    if head:
        notes.append(f"head replaced: {n_src} -> {n_dst} classes ({', '.join(head)})")
    sd = {k: v for k, v in sd.items() if k not in head}
    bad = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in sd.items()
           if k in target and v.shape != target[k].shape]
    if bad:
        raise ValueError(f"cannot start from {os.fspath(source)}: its tensors do not fit the "
                         f"model ({'; '.join(bad[:5])}); fine-tuning keeps the width and depth")
    _check_keys(set(sd) | set(head), set(target), f"weights in {os.fspath(source)}")
    model.load_state_dict(sd, strict=False)
    return notes


def _n_outputs(state_dict: Mapping[str, torch.Tensor]) -> int:
    """The class count of a state dict: the rows of its last 2-D weight (the classifier)."""
    weights = [v for k, v in state_dict.items() if k.endswith("weight") and v.dim() == 2]
    return int(weights[-1].shape[0])


def convert_deit_state_dict(state_dict: Mapping[str, torch.Tensor], config: PaSSTConfig) -> dict:
    """Map a timm distilled DeiT state dict onto ``config`` (PaSST or AST).

    - patch embedding: the RGB kernels are summed into one input channel;
    - position grid: split off the two token encodings, resize the square grid
      bicubically to the model's (F, T); PaSST takes the mean over time as the
      frequency encoding and the mean over frequency as the time encoding, AST
      keeps the flattened grid;
    - the ImageNet heads are dropped (the audio head keeps its initialisation);
    - with ``config.block_selection``, only those blocks are kept, renumbered.
    """
    sd = dict(state_dict)
    for key in ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight"):
        if key not in sd:
            raise ValueError(f"not a distilled DeiT state dict: key {key!r} is missing")
    d = sd["cls_token"].shape[-1]
    if d != config.embed_dim:
        raise ValueError(f"DeiT width {d} does not match the model's embed_dim {config.embed_dim}")
    src_depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    selection = config.block_selection or tuple(range(config.depth))
    if config.depth != src_depth:
        raise ValueError(f"DeiT has {src_depth} blocks but the config has depth {config.depth}")
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith(("head.", "head_dist.", "pos_embed", "cls_token", "dist_token",
                         "patch_embed.")):
            continue
        if k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            if int(i) in selection:
                out[f"blocks.{selection.index(int(i))}.{rest}"] = v
            continue
        out[k] = v
    w = sd["patch_embed.proj.weight"]  # (D, 3, p, p)
    out["patch_embed.proj.weight"] = w.float().sum(dim=1, keepdim=True).to(w.dtype)  # (D, 1, p, p)
    out["patch_embed.proj.bias"] = sd["patch_embed.proj.bias"]
    out["cls_token"], out["dist_token"] = sd["cls_token"], sd["dist_token"]
    pos = sd["pos_embed"]  # (1, 2 + S*S, D)
    out["new_pos_embed"] = pos[:, :2]  # (1, 2, D)
    n = pos.shape[1] - 2
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"DeiT position grid of {n} entries is not square")
    grid = pos[:, 2:].reshape(1, side, side, d).permute(0, 3, 1, 2)  # (1, D, S, S)
    grid = F.interpolate(grid.float(), size=config.grid, mode="bicubic", align_corners=False)
    grid = grid.to(pos.dtype)  # (1, D, F, T)
    if config.pos_embed == "disentangled":
        out["freq_new_pos_embed"] = grid.mean(dim=3, keepdim=True)  # (1, D, F, 1)
        out["time_new_pos_embed"] = grid.mean(dim=2, keepdim=True)  # (1, D, 1, T)
    else:
        out["pos_embed"] = grid.flatten(2).transpose(1, 2).contiguous()  # (1, F * T, D)
    return out


def load_deit_into(model: PaSST, state_dict: Mapping[str, torch.Tensor]) -> PaSST:
    """Load a converted DeiT state dict into ``model``; only the audio head stays as it was."""
    converted = convert_deit_state_dict(state_dict, model.config)
    head = {k for k in model.state_dict() if k.startswith("head.")}
    _check_keys(set(converted), set(model.state_dict()), "converted DeiT weights do not fit",
                allow_missing=head)
    model.load_state_dict(converted, strict=False)
    return model


def load_pretrained(model: PaSST, pretrained: str) -> PaSST:
    """``pretrained="imagenet"``: DeiT-B/16-384 weights through timm (needs the network)."""
    if pretrained != "imagenet":
        raise ValueError(f"unknown pretrained weights {pretrained!r}; expected 'imagenet' "
                         "(reference checkpoints load with load_reference_checkpoint)")
    if not isinstance(model, PaSST):
        raise ValueError(f"pretrained='imagenet' initialises PaSST / AST models from DeiT; "
                         f"this is a {type(model).__name__}")
    if model.config.embed_dim != 768:
        raise ValueError(f"ImageNet weights are {DEIT_NAME} (width 768, depth 12); "
                         f"the model has embed_dim {model.config.embed_dim}; use size='base'")
    import timm

    try:
        deit = timm.create_model(DEIT_NAME, pretrained=True)
    except Exception as e:  # network or hub errors surface with their cause
        raise RuntimeError(
            f"could not download the ImageNet weights {DEIT_NAME!r} through timm "
            f"(offline?): {type(e).__name__}: {e}") from e
    return load_deit_into(model, deit.state_dict())
