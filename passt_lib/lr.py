"""The learning-rate schedule of a training run, and the steps it counts.

A run is a list of phases (``passt_lib.phases``); each phase lasts whole epochs, or a
number of optimiser steps (whole passes over the data plus a last, shorter one). The
learning rate warms up linearly, then decays linearly (:func:`lr_at`). A phase with
``restart_lr`` (and the first phase) starts a new warm-up and decay; a phase without it
continues the previous phase's schedule (:func:`lr_segments`).

:class:`LRSchedule` puts it together: the steps of every epoch and the learning rate of
every step, from the phases, the steps per epoch and the warm-up in epochs. Everything
here is pure arithmetic on integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float,
          final_ratio: float = 0.01, decay: tuple[int, int] | None = None) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then linear decay to
    ``base_lr * final_ratio`` at ``total_steps`` (and constant after it). With ``decay`` =
    (first step, steps) the rate stays at ``base_lr`` after the warm-up until that step and
    decays over those steps (the authors' downstream recipes). Pure."""
    if total_steps < 1 or warmup_steps < 0 or step < 0:
        raise ValueError(f"need total_steps >= 1, warmup_steps >= 0, step >= 0; got "
                         f"{total_steps}, {warmup_steps}, {step}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if decay is not None:
        start, length = decay
        progress = min(max(step - start, 0) / max(length, 1), 1.0)
        return base_lr * (1.0 - (1.0 - final_ratio) * progress)
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return base_lr * (1.0 - (1.0 - final_ratio) * progress)


def lr_segments(phases, steps_per_epoch: int = 1) -> list[tuple[int, int, int]]:
    """For every phase: (segment index, steps before it in its LR segment, segment steps).

    A phase with ``restart_lr`` (and the first phase) starts a new LR schedule with
    warm-up; a phase without continues the previous one. With the default
    ``steps_per_epoch=1`` an epoch-only schedule is counted in epochs.
    """
    starts = [i for i, p in enumerate(phases) if i == 0 or p.restart_lr]
    steps = [p.n_steps(steps_per_epoch) for p in phases]
    out = []
    for i in range(len(phases)):
        s = max(j for j in starts if j <= i)
        end = min([j for j in starts if j > i], default=len(phases))
        out.append((starts.index(s), sum(steps[s:i]), sum(steps[s:end])))
    return out


def epoch_plan(phases, steps_per_epoch: int) -> list[list[int]]:
    """Steps of every epoch of every phase: whole epochs, and for a phase given in steps a
    last, shorter one (``[[2, 2, 1], [2]]`` for ``pool:2x5steps,full:1`` at 2 steps/epoch)."""
    plan = []
    for p in phases:
        n = p.n_steps(steps_per_epoch)
        plan.append([steps_per_epoch] * (n // steps_per_epoch)
                    + ([n % steps_per_epoch] if n % steps_per_epoch else []))
    return plan


def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    """The warm-up length in optimiser steps (the same for every LR segment)."""
    return round(warmup_epochs * steps_per_epoch)


@dataclass(frozen=True)
class LRSchedule:
    """Every epoch's steps and every step's learning rate, for a run's phases.

    Epochs are numbered over the whole run (0, 1, ...), across phases; ``k`` counts the
    optimiser steps within an epoch.
    """

    phases: Sequence
    steps_per_epoch: int
    warmup_epochs: float
    base_lr: float
    final_ratio: float = 0.01
    decay: tuple[float, float] | None = None  # (first epoch, epochs) of the decay; None: all

    @cached_property
    def plan(self) -> list[list[int]]:
        """Steps of each epoch, per phase (:func:`epoch_plan`)."""
        return epoch_plan(self.phases, self.steps_per_epoch)

    @cached_property
    def epoch_steps(self) -> list[int]:
        """Steps of each epoch of the run: (n_epochs,)."""
        return [n for p in self.plan for n in p]

    @property
    def n_epochs(self) -> int:
        return len(self.epoch_steps)

    @property
    def total_steps(self) -> int:
        return sum(self.epoch_steps)

    def phase_epochs(self, phase: int) -> range:
        """The run's epoch indices that belong to ``phase``."""
        first = sum(len(p) for p in self.plan[:phase])
        return range(first, first + len(self.plan[phase]))

    def phase_of(self, epoch: int) -> int:
        return next(i for i in range(len(self.plan)) if epoch in self.phase_epochs(i))

    def steps_before(self, epoch: int) -> int:
        """Optimiser steps of the run before ``epoch``."""
        return sum(self.epoch_steps[:epoch])

    @cached_property
    def _segments(self) -> list[tuple[int, int, int]]:
        return lr_segments(self.phases, self.steps_per_epoch)

    def lr(self, epoch: int, k: int) -> float:
        """Learning rate of step ``k`` of ``epoch``."""
        pi = self.phase_of(epoch)
        _, offset, total = self._segments[pi]
        first = self.phase_epochs(pi).start
        step = offset + self.steps_before(epoch) - self.steps_before(first) + k
        decay = None if self.decay is None else \
            tuple(round(x * self.steps_per_epoch) for x in self.decay)
        return lr_at(step, total, warmup_steps(self.warmup_epochs, self.steps_per_epoch),
                     self.base_lr, self.final_ratio, decay)
