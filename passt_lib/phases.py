"""Coarse-to-fine phases: the schedule of resolutions a run trains at, as configuration.

(The learning-rate schedule within and across phases lives in ``passt_lib.lr``.)

A phase schedule is a list of :class:`Phase`: train ``epochs`` epochs (or ``steps``
optimiser steps) on inputs compressed in time by ``factor`` with ``method``, then
move on to the next phase (the weights are carried over by
:func:`passt_lib.compression.enter_phase`). The last phase is always full resolution
(Feng et al. 2024, "From Coarse to Fine"): a model that ends coarse has never seen the
input it is evaluated on.

Two spellings, both accepted by :func:`parse_schedule`:

- a list of phases (``Phase`` objects or dicts with the same keys), e.g. from
  a YAML/JSON config;
- a compact string, one comma-separated entry per phase::

      "pool:4x2,pool:2x2,full:4"
      "pool:4x300steps,full:2"
      METHOD:FACTORxLENGTH[:FLAG...]   (compressed phase)
      full:LENGTH[:FLAG...]            (full resolution)

  LENGTH is a number of epochs (``2``) or of optimiser steps (``300steps``).

  Flags: ``max`` / ``avg`` (pooling mode, ``pool`` only), ``keep-lr``
  (continue the learning-rate schedule instead of restarting it with warm-up)
  and ``patchout-keep`` / ``patchout-off`` (how patchout composes with the
  compression; default: amounts rescaled to the compressed grid, see
  ``passt_lib.compression``).

:func:`format_schedule` writes the compact form back; ``parse_schedule``
of its output gives the same phases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from passt_lib.configs import from_dict_strict

METHODS = ("full", "frame_shift", "pool", "patchify")
POOL_MODES = ("avg", "max")
PATCHOUT_POLICIES = ("scale", "keep", "off")
_FLAG_KEEP_LR = "keep-lr"
_FLAG_PATCHOUT = "patchout-"  # + policy, e.g. "patchout-off"


@dataclass(frozen=True)
class Phase:
    """One phase of a coarse-to-fine schedule.

    method: "full" (no compression), "frame_shift" (front-end hop x factor),
        "pool" (spectrogram pooled along time, kernel = stride = factor) or
        "patchify" (time patch size and stride x factor).
    factor: temporal compression factor k (1 for "full", >= 2 otherwise).
    epochs: epochs spent in this phase (>= 1); the default when ``steps`` is not given.
    steps: optimiser steps spent in this phase instead (>= 1). Training runs a phase of
        ``steps`` as whole passes over the data plus a last, shorter pass, and the next
        phase starts a new pass.
    restart_lr: restart the learning-rate schedule (with its warm-up) at the
        start of the phase, as the paper does; False continues it.
    pool_mode: "avg" or "max"; only used by "pool".
    patchout: how the model's patchout amounts apply to the compressed grid:
        "scale" (default: rescaled in proportion, same fraction dropped),
        "keep" (same absolute amounts) or "off" (no patchout in this phase).
        Ignored by "full" phases, which use the model's own amounts.
    """

    method: str
    factor: int = 1
    epochs: int | None = None
    restart_lr: bool = True
    pool_mode: str = "avg"
    patchout: str = "scale"
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown compression method {self.method!r}; expected one of {METHODS}")
        if isinstance(self.factor, bool) or not isinstance(self.factor, int):
            raise ValueError(f"factor must be an int, got {self.factor!r}")
        if self.method == "full" and self.factor != 1:
            raise ValueError(f"a full-resolution phase has factor 1, got factor={self.factor}")
        if self.method != "full" and self.factor < 2:
            raise ValueError(
                f"method {self.method!r} needs a compression factor >= 2, got {self.factor} "
                f"(use method 'full' for an uncompressed phase)"
            )
        if self.epochs is not None and self.steps is not None:
            raise ValueError(f"a phase lasts epochs or steps, not both; got epochs={self.epochs}, "
                             f"steps={self.steps}")
        if self.steps is None:
            if self.epochs is None:
                object.__setattr__(self, "epochs", 1)
            if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
                raise ValueError(f"epochs must be an int >= 1, got {self.epochs!r}")
        elif isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {self.steps!r}")
        if self.pool_mode not in POOL_MODES:
            raise ValueError(f"unknown pool_mode {self.pool_mode!r}; expected one of {POOL_MODES}")
        if self.patchout not in PATCHOUT_POLICIES:
            raise ValueError(
                f"unknown patchout policy {self.patchout!r}; expected one of {PATCHOUT_POLICIES}")
        if not isinstance(self.restart_lr, bool):
            raise ValueError(f"restart_lr must be a bool, got {self.restart_lr!r}")

    @property
    def is_full(self) -> bool:
        return self.method == "full"

    def n_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of this phase when an epoch has ``steps_per_epoch`` steps."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    @property
    def length(self) -> str:
        """The compact length: ``"3"`` (epochs) or ``"300steps"``."""
        return f"{self.steps}steps" if self.steps is not None else str(self.epochs)


def _parse_int(text: str, what: str, entry: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"phase {entry!r}: {what} must be an integer, got {text!r}") from None


def _parse_entry(entry: str) -> Phase:
    parts = entry.strip().split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(
            f"cannot parse phase {entry!r}; expected METHOD:FACTORxEPOCHS (e.g. 'pool:4x2' or "
            f"'pool:4x300steps') or full:EPOCHS (e.g. 'full:4')"
        )
    method, body, flags = parts[0].strip(), parts[1].strip(), [p.strip() for p in parts[2:]]
    if method not in METHODS:
        raise ValueError(f"phase {entry!r}: unknown method {method!r}; expected one of {METHODS}")
    if "x" in body:
        factor_s, epochs_s = body.split("x", 1)
        factor = _parse_int(factor_s, "the factor", entry)
    else:
        if method != "full":
            raise ValueError(
                f"phase {entry!r}: method {method!r} needs FACTORxEPOCHS, e.g. '{method}:4x2'"
            )
        factor, epochs_s = 1, body
    kwargs: dict = {}
    if epochs_s.strip().endswith("steps"):
        kwargs["steps"] = _parse_int(epochs_s.strip()[:-len("steps")], "steps", entry)
        epochs = None
    else:
        epochs = _parse_int(epochs_s, "epochs", entry)
    for flag in flags:
        if flag in POOL_MODES:
            if method != "pool":
                raise ValueError(f"phase {entry!r}: flag {flag!r} only applies to method 'pool'")
            kwargs["pool_mode"] = flag
        elif flag == _FLAG_KEEP_LR:
            kwargs["restart_lr"] = False
        elif flag.startswith(_FLAG_PATCHOUT) and flag[len(_FLAG_PATCHOUT):] in PATCHOUT_POLICIES:
            kwargs["patchout"] = flag[len(_FLAG_PATCHOUT):]
        else:
            raise ValueError(
                f"phase {entry!r}: unknown flag {flag!r}; expected one of "
                f"{(*POOL_MODES, _FLAG_KEEP_LR, *(_FLAG_PATCHOUT + p for p in PATCHOUT_POLICIES))}"
            )
    return Phase(method, factor, epochs, **kwargs)


def _from_mapping(d: Mapping) -> Phase:
    return from_dict_strict(Phase, d, "phase")


def parse_schedule(spec: str | Sequence[Phase | Mapping] | None, *, epochs: int | None = None
                   ) -> list[Phase]:
    """Phases from a compact string, a list of phases/dicts, or None.

    ``None`` (or an empty string) means fine-only training and needs ``epochs``:
    it gives ``[Phase("full", 1, epochs)]``. Raises ValueError on unknown
    methods, malformed entries, or a schedule whose last phase is not full
    resolution.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        if epochs is None:
            raise ValueError("an empty schedule needs `epochs` (it means 'full:<epochs>')")
        return [Phase("full", 1, epochs)]
    if isinstance(spec, str):
        phases = [_parse_entry(e) for e in spec.split(",")]
    elif isinstance(spec, Sequence):
        phases = []
        for p in spec:
            if isinstance(p, Phase):
                phases.append(p)
            elif isinstance(p, Mapping):
                phases.append(_from_mapping(p))
            elif isinstance(p, str):
                phases.append(_parse_entry(p))
            else:
                raise ValueError(f"a phase must be a Phase, a dict or a string, got {p!r}")
    else:
        raise ValueError(f"a schedule must be a string or a list of phases, got {spec!r}")
    if not phases:
        raise ValueError("a schedule needs at least one phase")
    if not phases[-1].is_full:
        raise ValueError(
            f"the last phase must be full resolution ('full:<epochs>'), got "
            f"{format_phase(phases[-1])!r}: a model evaluated at full resolution "
            f"must finish training there"
        )
    return phases


def format_phase(p: Phase) -> str:
    s = f"full:{p.length}" if p.is_full else f"{p.method}:{p.factor}x{p.length}"
    if p.method == "pool" and p.pool_mode != "avg":
        s += f":{p.pool_mode}"
    if not p.restart_lr:
        s += f":{_FLAG_KEEP_LR}"
    if p.patchout != "scale":
        s += f":{_FLAG_PATCHOUT}{p.patchout}"
    return s


def format_schedule(phases: Sequence[Phase]) -> str:
    """Compact string of ``phases``; ``parse_schedule(format_schedule(p)) == p``."""
    return ",".join(format_phase(p) for p in phases)


SHAPES = ("2-phase", "3-phase")


def standard_schedule(method: str, shape: str, epochs: int, factor: int = 4,
                      coarse_fraction: float = 0.5) -> str:
    """The study's standard schedules, as a compact string, for ``epochs`` in all.

    "2-phase": ``method`` at ``factor`` for the coarse fraction of the epochs, then full
    resolution; "3-phase": the same coarse epochs split between ``factor`` and
    ``factor // 2`` (e.g. 8 epochs: ``pool:4x4,full:4`` and ``pool:4x2,pool:2x2,full:4``).
    The benchmarks and the ``20_coarse_to_fine`` notebook both build their schedules here.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown schedule shape {shape!r}; expected one of {SHAPES}")
    if method not in METHODS or method == "full":
        raise ValueError(f"a {shape} schedule compresses with one of {METHODS[1:]}, got {method!r}")
    if epochs < 2:
        raise ValueError(f"a {shape} schedule needs at least 2 epochs (coarse, then full); "
                         f"got epochs={epochs}")
    coarse = min(max(1, round(coarse_fraction * epochs)), epochs - 1)
    if shape == "2-phase":
        return f"{method}:{factor}x{coarse},full:{epochs - coarse}"
    if factor < 4 or factor % 2:
        raise ValueError(f"a 3-phase schedule continues at factor/2 and needs an even factor "
                         f">= 4, got {factor}")
    if coarse < 2:
        raise ValueError(f"a 3-phase schedule needs >= 2 coarse epochs; {epochs} epochs x "
                         f"coarse_fraction {coarse_fraction} gives {coarse}")
    first = coarse // 2
    return f"{method}:{factor}x{first},{method}:{factor // 2}x{coarse - first},full:{epochs - coarse}"


def total_epochs(phases: Sequence[Phase]) -> int | None:
    """Epochs of the whole schedule; None when a phase is given in steps (the epochs then
    depend on the dataset size and batch)."""
    if any(p.steps is not None for p in phases):
        return None
    return sum(p.epochs for p in phases)
