"""FLOPs of PaSST / AST, analytic and measured.

Analytic counts follow ``torch.utils.flop_counter`` conventions so the two
can be compared: one multiply-add is 2 FLOPs, and only matrix products count
(patch-embedding convolution, linear layers, the two attention products);
normalisation, softmax, GELU, biases and additions are left out (a few % of
the total at most).

Per sample, with D the width, N the sequence length in the blocks (patches
left after compression AND patchout, + 2 special tokens), P = F * T the
patch grid (the patch embedding runs on the whole grid, before patchout),
(pf, pt) the patch size, Hm the MLP width and C the classes:

- patch embedding: 2 * P * D * pf * pt
- a block with Q queries over N keys/values: 2 * Q * D^2 (queries)
  + 2 * N * D * 2D (keys, values) + 2 * 2 * Q * N * D (scores, weighted sum)
  + 2 * Q * D^2 (projection) + 2 * 2 * Q * D * Hm (MLP); Q = N except in the
  last block, where the classifier needs only the 2 special tokens (Q = 2,
  as ``PaSST.forward`` computes it)
- head: 2 * D * C (the final LayerNorm / mean over the two tokens is free)

Training = forward + backward. Backward costs twice the forward for every
product whose input needs a gradient; the patch embedding's input is the
data, so its backward is only the weight gradient (once its forward); fused
attention (``scaled_dot_product_attention``) recomputes the scores in its
backward, 5 products for the forward's 2. Hence
``train = 3 * (linear + head) + 3.5 * attention + 2 * patch_embed``, close to
the usual "3 x forward" rule. (Where the model writes attention out as two
matmuls, bf16 on CPU, its backward is 4 products, not 5: the count is then
high by half the attention forward, about 1% at the study's sizes.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from passt_lib.compression import phase_config
from passt_lib.model import PaSSTConfig
from passt_lib.phases import Phase


def _parts(config: PaSSTConfig, training: bool) -> tuple[int, int, int, int]:
    """(patch_embed, linear layers of the blocks, attention products, head) forward FLOPs."""
    d = config.embed_dim
    f, t = config.grid
    pf, pt = config.patch_size
    patch = 2 * f * t * d * pf * pt
    n = config.n_tokens(training)
    hidden = int(d * config.mlp_ratio)

    def block(q: int) -> tuple[int, int]:  # (linear, attention) of q queries over n tokens
        linear = 2 * q * d * d + 2 * n * d * 2 * d + 2 * q * d * d + 4 * q * d * hidden
        return linear, 4 * q * n * d

    inner, last = block(n), block(2)
    linear = (config.n_blocks - 1) * inner[0] + last[0]
    attention = (config.n_blocks - 1) * inner[1] + last[1]
    head = 2 * d * config.n_classes
    return patch, linear, attention, head


def forward_flops(config: PaSSTConfig, training: bool = False) -> int:
    """Forward FLOPs per sample; ``training`` counts the tokens left after patchout."""
    return sum(_parts(config, training))


def train_flops(config: PaSSTConfig) -> int:
    """Training FLOPs (forward with patchout + backward) per sample."""
    patch, linear, attention, head = _parts(config, training=True)
    return 3 * (linear + head) + (7 * attention) // 2 + 2 * patch


def schedule_train_flops(config: PaSSTConfig, phases: Sequence[Phase],
                         samples_per_epoch: int, batch_size: int | None = None) -> list[int]:
    """Training FLOPs of each phase of a schedule, for the full-resolution ``config``.

    A phase given in epochs trains ``epochs * samples_per_epoch`` samples, one given in
    steps ``steps * batch_size``.
    """
    out = []
    for p in phases:
        if p.steps is not None and batch_size is None:
            raise ValueError(f"a phase of {p.steps} steps needs batch_size to count its samples")
        samples = p.steps * batch_size if p.steps is not None else p.epochs * samples_per_epoch
        c = phase_config(config, p.method, p.factor, patchout=p.patchout)
        out.append(train_flops(c) * samples)
    return out


# --------------------------------------------------------------------------------------
# Measured with FlopCounterMode (any model, e.g. the CNN baselines)
# --------------------------------------------------------------------------------------
def _sdpa_cpu(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def _sdpa_cpu_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, q, k, v)


def _conv_backward(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                   transposed, _output_padding, _groups, output_mask, out_shape=None) -> int:
    """Each of grad_input and grad_weight costs what the forward convolution costs.

    torch's own formula ignores ``groups`` and so counts a depthwise convolution's
    backward as if it were dense: ~28x too much for the MobileNets' blocks.
    """
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


# FlopCounterMode knows the CUDA attention kernels but not the CPU one (torch 2.11), and
# miscounts grouped-convolution backward.
_CUSTOM = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
    torch.ops.aten.convolution_backward: _conv_backward,
}


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts CPU scaled-dot-product attention."""
    return FlopCounterMode(display=False, custom_mapping=_CUSTOM)


def measure_flops(model: nn.Module, example: torch.Tensor, *, backward: bool = False) -> int:
    """FLOPs of one forward (and backward of ``output.sum()``) of ``model`` on ``example``.

    Runs in the model's current train / eval mode; the count is for the whole
    batch of ``example``. Parameter gradients are cleared afterwards.
    """
    with flop_counter() as counter:
        if backward:
            out = model(example)
            out = out[0] if isinstance(out, tuple) else out
            out.float().sum().backward()
        else:
            # Not under no_grad: FlopCounterMode's module tracker fails on views of
            # parameters made in no_grad mode (they require grad but have no grad_fn).
            model(example)
    if backward:
        model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
