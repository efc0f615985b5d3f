"""Benchmark harness: timing discipline, memory, CSV, and tiny end-to-end runs."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from passt_lib.bench import common, memory

ENV_COLUMNS = ("device", "precision", "torch", "timm", "python", "commit", "dirty")


def test_time_fn_returns_one_time_per_timed_step_and_skips_warmup():
    calls = []
    timing = common.time_fn(lambda: calls.append(1), steps=4, warmup=3)
    assert len(timing.times) == 4
    assert len(calls) == 7
    assert timing.min <= timing.median <= timing.max


def test_time_fn_median_tracks_the_work():
    timing = common.time_fn(lambda: time.sleep(0.01), steps=3, warmup=0)
    assert 0.009 < timing.median < 0.5
    assert timing.per_second(4) == pytest.approx(4 / timing.median)


def test_timing_median_of_known_times():
    t = common.Timing((3.0, 1.0, 2.0, 10.0, 2.5))
    assert t.median == 2.5
    assert t.spread == pytest.approx((10.0 - 1.0) / 2.5)


@pytest.mark.parametrize("steps,warmup", [(0, 1), (2, -1)])
def test_bad_step_counts_are_errors(steps, warmup):
    with pytest.raises(ValueError, match="step"):
        common.time_fn(lambda: None, steps=steps, warmup=warmup)


def test_interleaved_calls_run_round_robin():
    order = []
    fns = {name: (lambda n=name: order.append(n)) for name in ("a", "b", "c")}
    timings = common.time_interleaved(fns, steps=3, warmup=1)
    assert order == ["a", "b", "c"] * 4  # one warm-up round, then three timed rounds
    assert all(len(t.times) == 3 for t in timings.values())
    assert common.interleave_order(["x", "y"], 2) == ["x", "y", "x", "y"]


def test_interleave_rejects_duplicate_names():
    with pytest.raises(ValueError, match="distinct"):
        common.interleave_order(["a", "a"], 1)


def test_peak_step_memory_sees_a_temporary_allocation():
    def allocate():
        x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, freed when the call returns
        return float(x[0])

    held = memory.peak_step_memory(allocate)
    assert held > 32 * 1024 * 1024
    assert memory.peak_step_memory(lambda: None) < held
    assert "step" in memory.memory_method("cpu")


def test_train_step_updates_weights_and_counts_flops():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(1 * 8 * 10, 5))
    mel, target = common.synthetic_batch((1, 8, 10), 5, batch=3)
    step = common.TrainStep(model, mel, target, precision="fp32", lr=1e-2)
    before = model[1].weight.detach().clone()
    step()
    assert not torch.equal(before, model[1].weight)
    # forward 2*B*in*out, backward twice that (grads of weights and of nothing else: input
    # has no grad, so only the weight gradient) -> at least forward + weight-grad.
    flops = common.count_flops(step)
    assert flops >= 2 * (2 * 3 * 80 * 5)


def test_count_flops_counts_cpu_attention():
    q = torch.randn(1, 2, 16, 8, requires_grad=True)
    flops = common.count_flops(
        lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward())
    assert flops >= 3 * 4 * 1 * 2 * 16 * 16 * 8  # forward 2 matmuls, backward 4


def test_csv_has_env_columns(tmp_path):
    env = common.env_info("cpu", "fp32")
    path = common.write_csv(tmp_path / "x.csv", [{"a": 1}, {"a": 2, "b": 3}], env)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r["a"] for r in rows] == ["1", "2"]
    assert rows[1]["b"] == "3"
    for col in ENV_COLUMNS:
        assert rows[0][col] != ""
    assert rows[0]["precision"] == "fp32"
    assert rows[0]["torch"] == torch.__version__
    assert rows[0]["torchaudio"] and rows[0]["numpy"] and rows[0]["hear21passt"]


def test_dispatcher_knows_every_subcommand(capsys):
    """Every benchmark module with a main() is a subcommand, and every subcommand runs it."""
    import importlib
    import pkgutil

    import passt_lib.bench as bench

    modules = [m.name for m in pkgutil.iter_modules(bench.__path__) if m.name != "__main__"]
    with_main = {f"passt_lib.bench.{m}" for m in modules
                 if hasattr(importlib.import_module(f"passt_lib.bench.{m}"), "main")}
    assert {module for module, _ in bench.SUBCOMMANDS.values()} == with_main
    for name in bench.SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_:
            bench.main([name, "--help"])
        assert exit_.value.code == 0
        assert f"passt-study bench {name}" in capsys.readouterr().out


@pytest.mark.slow
def test_reference_bench_end_to_end(tmp_path, capsys):
    pytest.importorskip("hear21passt")
    from passt_lib.bench import main

    out = tmp_path / "reference.csv"
    assert main(["reference", "--depth", "1", "--size", "tiny", "--tdim", "100",
                 "--steps", "1", "--warmup", "0", "--matmul-size", "256", "--out", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    steps = {r["name"]: r for r in rows if r["kind"] == "step"}
    assert {"ref-S-fp32", "ours-S-fp32", "ref-B-fp32", "ours-B-fp32"} <= set(steps)
    assert all(float(r["samples_per_s"]) > 0 for r in steps.values())
    # Same architecture; ours never does more work than the reference (its last block
    # computes only what the head reads).
    ref, ours = float(steps["ref-S-fp32"]["flops_per_step"]), float(
        steps["ours-S-fp32"]["flops_per_step"])
    assert 0 < ours <= 1.05 * ref
    # Counted (FlopCounterMode) and analytic (passt_lib.flops) FLOP ratios agree.
    ratios = {r["name"]: float(r["value"]) for r in rows if r["kind"] == "ratio"}
    counted = ratios["counted FLOP ratio PaSST-B / PaSST-S (FlopCounterMode)"]
    assert counted > 1.2
    assert counted == pytest.approx(
        ratios["analytic training FLOP ratio PaSST-B / PaSST-S"], rel=0.1)
    assert "speed-up at equal precision fp32" in capsys.readouterr().out


@pytest.mark.slow
def test_table_bench_two_tiny_models(tmp_path):
    from passt_lib.bench import main

    out = tmp_path / "table.csv"
    assert main(["table", "--scale", "smoke", "--models", "ast", "passt-s", "--steps", "1",
                 "--warmup", "0", "--batch", "2", "--matmul-size", "256",
                 "--out", str(out)]) == 0
    with open(out) as f:
        rows = {r["preset"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"ast", "passt-s"}
    assert float(rows["ast"]["train_x_ast"]) == pytest.approx(1.0)
    # patchout shortens the sequence and cuts the FLOPs
    assert int(rows["passt-s"]["seq_len"]) < int(rows["ast"]["seq_len"])
    assert float(rows["passt-s"]["train_gflops_per_sample"]) < float(
        rows["ast"]["train_gflops_per_sample"])
    for r in rows.values():
        assert float(r["mem_mib_per_sample"]) > 0
        assert float(r["train_samples_per_s"]) > 0
        assert r["batch"] == "2"
        for col in ENV_COLUMNS:
            assert r[col] != ""


@pytest.mark.slow
def test_scaling_bench_writes_csv_and_figure(tmp_path, drawn):
    from passt_lib.bench import main

    out = tmp_path / "scaling.csv"
    assert main(["scaling", "--seconds", "0.5", "1", "--models", "passt-s", "--depth", "1",
                 "--steps", "1", "--warmup", "0", "--out", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["seconds"]) for r in rows] == [0.5, 1.0]
    # the time encoding covers each clip: twice the clip, (about) twice the frames
    frames = [int(r["input"].split("x")[1]) for r in rows]
    assert frames[1] >= 2 * frames[0] - 1
    assert int(rows[1]["seq_len"]) > int(rows[0]["seq_len"])
    png = drawn(tmp_path / "scaling.png")
    assert png.shape == (540, 1800, 3)  # three panels, 12 x 3.6 in at 150 dpi
    assert (np.abs(png.astype(int) - (31, 119, 180)).sum(-1) < 30).sum() > 50  # passt-s's curve
    pdf = (tmp_path / "scaling.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


def test_train_bench_measures_loader_device_and_end_to_end(tmp_path, capsys):
    """`bench train` on 16 synthetic 10 s mp3 clips: the three rates, the bound, the stall."""
    from passt_lib.bench import train as bench_train

    out = tmp_path / "train.csv"
    assert bench_train.main(["--clips", "16", "--batch", "4", "--epochs", "2",
                             "--steps", "2", "--workers", "1", "--data-root", str(tmp_path),
                             "--out", str(out)]) == 0
    row = next(csv.DictReader(out.open()))
    for key in ("loader_clips_per_s", "device_clips_per_s", "end_to_end_clips_per_s",
                "bound_clips_per_s"):
        assert float(row[key]) > 0, key
    bound = 2 / (float(row["loader_cpu_ms_per_clip"]) + float(row["device_cpu_ms_per_clip"]))
    assert float(row["bound_clips_per_s"]) == pytest.approx(int(row["cores"]) * 1e3 * bound / 2)
    assert 0 <= float(row["stall_fraction"]) <= 1 and row["workers"] == "1"
    assert float(row["end_to_end_over_bound"]) == pytest.approx(
        float(row["end_to_end_clips_per_s"]) / float(row["bound_clips_per_s"]))
    assert "end to end / bound" in capsys.readouterr().out
    assert set(ENV_COLUMNS) <= set(row)
