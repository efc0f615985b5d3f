"""Augmentation properties and the balanced sampler against a hand computation."""

import numpy as np
import pytest
import torch

from passt_lib.data import DataConfig, augment_batch, balanced_weights, make_sampler
from passt_lib.data.augment import (
    mixup_lambda,
    random_gain,
    random_roll,
    soft_targets,
    spec_mixup,
    wave_mixup,
)
from passt_lib.data.sampler import ShardedSampler


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_mixup_lambda_folded_and_beta_shaped():
    lam = mixup_lambda(20000, 2.0, gen())
    assert lam.min() >= 0.5 and lam.max() <= 1.0
    # folded Beta(2, 2): mean of max(l, 1 - l) is 1 - 5/16 = 0.6875
    assert abs(lam.mean().item() - 0.6875) < 0.01
    assert torch.equal(mixup_lambda(5, 0.3, gen(1)), mixup_lambda(5, 0.3, gen(1)))


def test_wave_mixup_mixes_half_the_batch():
    b, s, c = 8, 64, 8
    wave = torch.randn(b, s)
    wave = wave - wave.mean(1, keepdim=True)
    target = torch.eye(b, c)
    w, t = wave_mixup(wave, target, fraction=0.5, alpha=2.0, generator=gen())
    changed = (t != target).any(1)
    assert changed.sum() <= 4  # at most half (a sample may draw itself as partner)
    assert (~changed).sum() >= 4
    assert torch.allclose(w[~changed], wave[~changed])
    assert torch.allclose(t.sum(1), torch.ones(b))  # targets stay a convex combination
    assert (t.max(1).values >= 0.5 - 1e-6).all()  # lambda >= 0.5 keeps the own label dominant
    assert torch.allclose(w.mean(1), torch.zeros(b), atol=1e-5)
    assert torch.equal(wave_mixup(wave, target, generator=gen(3))[0],
                       wave_mixup(wave, target, generator=gen(3))[0])
    w0, t0 = wave_mixup(wave, target, fraction=0.0)
    assert w0 is wave and t0 is target


def test_spec_mixup_convex_and_off_switch():
    mel = torch.rand(6, 1, 4, 5)
    target = torch.eye(6)
    m, t = spec_mixup(mel, target, alpha=0.3, generator=gen())
    assert m.shape == mel.shape and t.shape == target.shape
    assert torch.allclose(t.sum(1), torch.ones(6))
    assert (t.max(1).values >= 0.5 - 1e-6).all()
    # each mixed row is lam * own + (1 - lam) * partner with the lam read off the targets
    lam = t[torch.arange(6), torch.arange(6)]
    partner = torch.where(lam < 1, t.masked_fill(torch.eye(6, dtype=bool), -1).argmax(1),
                          torch.arange(6))
    expect = lam.view(6, 1, 1, 1) * mel + (1 - lam.view(6, 1, 1, 1)) * mel[partner]
    assert torch.allclose(m, expect, atol=1e-6)
    m0, t0 = spec_mixup(mel, target, alpha=0.0)
    assert m0 is mel and t0 is target


def test_gain_range_and_roll_is_a_permutation():
    wave = torch.randn(64, 100)
    g = random_gain(wave, 7.0, gen())
    ratio_db = 20 * torch.log10((g / wave).abs().mean(1))
    assert ratio_db.abs().max() <= 7.0 + 1e-4 and ratio_db.std() > 1.0
    assert random_gain(wave, 0.0) is wave
    r = random_roll(wave, 0.5, gen())
    assert torch.allclose(r.sort(1).values, wave.sort(1).values)
    shift = [int(torch.nonzero(torch.isclose(r[i], wave[i, 0]))[0]) for i in range(4)]
    for i, k in enumerate(shift):
        assert torch.equal(r[i], torch.roll(wave[i], k))
    assert random_roll(wave, 0.0) is wave


def test_augment_batch_off_switches_and_soft_targets():
    wave, target = torch.randn(4, 32), torch.tensor([0, 1, 2, 1])
    off = DataConfig().no_augmentation()
    w, t = augment_batch(wave, target, off, generator=gen())
    assert torch.equal(w, wave) and torch.equal(t, target)
    w, t = augment_batch(wave, target, DataConfig(), n_classes=3, generator=gen())
    assert t.shape == (4, 3) and torch.allclose(t.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="n_classes"):
        augment_batch(wave, target, DataConfig(), generator=gen())
    assert torch.equal(soft_targets(target, 3).argmax(1), target)


def test_balanced_weights_by_hand():
    t = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32)
    # counts: 2, 1, 1 -> per label 1000/102, 1000/101, 1000/101
    expect = [1000 / 102, 1000 / 102 + 1000 / 101, 1000 / 101, 0.0]
    np.testing.assert_allclose(balanced_weights(t), expect)
    np.testing.assert_allclose(balanced_weights(t, 10, 0), [5, 15, 10, 0])


class _Targets:
    def __init__(self, t):
        self.t = t

    def targets(self):
        return self.t

    def __len__(self):
        return len(self.t)


def test_balanced_sampler_frequencies_and_ddp_shards():
    t = np.zeros((100, 2), np.float32)
    t[:90, 0] = 1  # 90 of class 0, 10 of class 1
    t[90:, 1] = 1
    ds = _Targets(t)
    cfg = DataConfig(num_samples=20000)
    idx = np.array(list(make_sampler(ds, cfg, seed=1)))
    share = (idx >= 90).mean()
    w0, w1 = 1000 / 190, 1000 / 110
    assert abs(share - 10 * w1 / (10 * w1 + 90 * w0)) < 0.02
    full = make_sampler(ds, cfg, seed=1).global_indices()
    shards = [list(make_sampler(ds, cfg, rank=r, world_size=2, seed=1)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 10000
    assert shards[0] == full[0::2].tolist() and shards[1] == full[1::2].tolist()
    s = make_sampler(ds, cfg, seed=1)
    s.set_epoch(1)
    assert not torch.equal(s.global_indices(), full)


def test_shuffle_sampler_covers_each_index_once_across_ranks():
    shards = [list(ShardedSampler(10, rank=r, world_size=3, seed=0)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    flat = sum(shards, [])
    assert set(flat) == set(range(10)) and len(flat) == 12  # padded by 2 repeats
    with pytest.raises(ValueError, match="rank"):
        ShardedSampler(10, rank=3, world_size=3)


def _reference_augment(wave, target, gen_seed, fraction=0.5, alpha=2.0, max_db=7.0,
                       roll_fraction=0.5):
    """Roll, gain and wave mixup written clip by clip with NumPy, drawing the same numbers
    in the same order from the same generator: the reference for the batched version."""
    g = gen(gen_seed)
    x, y = wave.numpy().astype(np.float64), target.numpy().astype(np.float64)
    b, s = x.shape
    m = int(roll_fraction * s)
    shifts = (torch.randint(-m, m + 1, (b,), generator=g) % s).tolist()
    x = np.stack([np.roll(x[i], k) for i, k in enumerate(shifts)])
    db = ((torch.rand(b, generator=g) * 2 - 1) * max_db).numpy()
    x = x * (10 ** (db / 20))[:, None]
    n_mix = int(round(fraction * b))
    chosen = torch.randperm(b, generator=g)[:n_mix].tolist()
    partner = torch.randperm(b, generator=g)[:n_mix].tolist()
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    lam = np.random.default_rng(seed).beta(alpha, alpha, n_mix)
    lam = np.maximum(lam, 1 - lam)
    out_x, out_y = x.copy(), y.copy()
    for j, (i, p) in enumerate(zip(chosen, partner)):
        out_x[i] = lam[j] * (x[i] - x[i].mean()) + (1 - lam[j]) * (x[p] - x[p].mean())
        out_y[i] = lam[j] * y[i] + (1 - lam[j]) * y[p]
    return out_x, out_y


def test_batched_augmentation_equals_the_clip_by_clip_reference():
    wave = torch.randn(12, 400)
    target = (torch.rand(12, 5) < 0.3).float()
    w, t = augment_batch(wave, target, DataConfig(), n_classes=5, generator=gen(7))
    ref_w, ref_t = _reference_augment(wave, target, 7)
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.numpy(), ref_t, rtol=1e-6, atol=1e-6)


def test_augmentation_runs_where_the_batch_is():
    """On a device without data ("meta") every op must stay there: only the draws (a few
    numbers per clip) come from the CPU generator; nothing is copied back to the host."""
    wave = torch.empty(8, 300, device="meta")
    target = torch.empty(8, 4, device="meta")
    w, t = augment_batch(wave, target, DataConfig(), n_classes=4, generator=gen())
    m, t2 = spec_mixup(torch.empty(8, 1, 6, 7, device="meta"), t, 0.3, gen())
    assert w.device.type == t.device.type == m.device.type == t2.device.type == "meta"
    assert w.shape == (8, 300) and m.shape == (8, 1, 6, 7)
