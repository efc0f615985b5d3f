import pytest
import torch
import torch.nn as nn

from passt_lib.compression import phase_config
from passt_lib.flops import forward_flops, measure_flops, schedule_train_flops, train_flops
from passt_lib.model import PaSST, PaSSTConfig
from passt_lib.phases import parse_schedule


def tiny(**kw) -> PaSSTConfig:
    base = dict(embed_dim=32, depth=2, num_heads=2, input_fdim=32, input_tdim=101, n_classes=5)
    return PaSSTConfig(**{**base, **kw})


CONFIGS = {
    "passt-s": tiny(s_patchout_t=3, s_patchout_f=1),
    "passt-u": tiny(u_patchout=5),
    "ast": tiny(pos_embed="flat"),
}


@pytest.mark.parametrize("name, method", [
    ("passt-s", "full"), ("passt-u", "full"), ("ast", "full"), ("passt-s", "patchify"),
    ("ast", "pool"),
])
def test_analytic_matches_flop_counter(name, method):
    cfg = phase_config(CONFIGS[name], method, 1 if method == "full" else 2)
    model = PaSST(cfg)
    x = torch.randn(3, 1, 32, cfg.input_tdim)
    model.eval()
    assert measure_flops(model, x) == pytest.approx(3 * forward_flops(cfg, False), rel=0.02)
    model.train()  # patchout active: the counted tokens are the kept ones
    assert measure_flops(model, x) == pytest.approx(3 * forward_flops(cfg, True), rel=0.02)
    assert measure_flops(model, x, backward=True) == pytest.approx(3 * train_flops(cfg), rel=0.02)
    assert all(p.grad is None for p in model.parameters())


def test_patchout_and_compression_reduce_flops():
    cfg = CONFIGS["passt-s"]
    assert forward_flops(cfg, True) < forward_flops(cfg, False)
    coarse = phase_config(cfg, "pool", 2)
    assert train_flops(coarse) < 0.6 * train_flops(cfg)


def test_schedule_flops_add_up():
    cfg = CONFIGS["passt-s"]
    phases = parse_schedule("pool:2x2,full:3")
    per_phase = schedule_train_flops(cfg, phases, samples_per_epoch=10)
    assert per_phase[1] == train_flops(cfg) * 10 * 3
    assert per_phase[0] == train_flops(phase_config(cfg, "pool", 2)) * 10 * 2
    in_steps = parse_schedule("pool:2x7steps,full:3")  # 7 steps of 4 clips: 28 samples
    assert schedule_train_flops(cfg, in_steps, samples_per_epoch=10, batch_size=4)[0] == \
        train_flops(phase_config(cfg, "pool", 2)) * 28
    with pytest.raises(ValueError, match="needs batch_size"):
        schedule_train_flops(cfg, in_steps, samples_per_epoch=10)


def test_measure_flops_of_a_cnn():
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    x = torch.randn(2, 1, 8, 8)
    expected = 2 * (2 * 8 * 8 * 4 * 9) + 2 * (2 * 256 * 2)  # conv + linear, batch of 2
    assert measure_flops(cnn, x) == expected


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_conv_backward_costs_two_forwards_whatever_the_groups(groups):
    from passt_lib.flops import flop_counter

    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 16, 12, 10, requires_grad=True)
    with flop_counter() as fwd:
        y = conv(x)
    with flop_counter() as bwd:
        y.sum().backward()
    forward = fwd.get_total_flops()
    assert forward == 2 * 2 * 16 * (16 // groups) * 9 * 12 * 10
    assert bwd.get_total_flops() == 2 * forward  # grad_input + grad_weight
