"""Two CPU processes under torchrun (gloo): replicas stay identical, only rank 0 writes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

# Runs train() on every rank, then saves that rank's trained parameters. Rank 1 is
# pointed at its own out_dir, which must stay absent: only rank 0 writes.
WORKER = textwrap.dedent("""
    import os, sys, torch
    from passt_lib.train import TrainConfig, train
    from passt_lib.train_config import read_config_file

    rank = int(os.environ["RANK"])
    config = TrainConfig.from_dict(read_config_file(sys.argv[1]))
    if rank != 0:
        config = config.replace(out_dir=sys.argv[2] + "/rank1_out")
    result = train(config)
    params = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
    torch.save({"params": params, "history": result.history}, f"{sys.argv[2]}/rank{rank}.pt")
""")


def _write_noise_tones(path, n, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(32000) / 32000
    targets = rng.random((n, 3)) < 0.5
    targets[np.arange(n), rng.integers(0, 3, n)] = True
    waves = 0.02 * rng.standard_normal((n, t.size))
    for c in range(3):
        waves += targets[:, c:c + 1] * 0.2 * np.sin(2 * np.pi * 500 * (c + 1) * t)
    with h5py.File(path, "w") as f:
        f["audio_name"] = np.array([f"c{i}".encode() for i in range(n)], dtype="S20")
        f["waveform"] = np.round(np.clip(waves, -1, 1) * 32767).astype(np.int16)
        f["target"] = targets
    return str(path)


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")
def test_two_process_gloo_ddp(tmp_path):
    data = {"format": "panns-hdf5", "train_path": _write_noise_tones(tmp_path / "tr.h5", 16, 0),
            "eval_path": _write_noise_tones(tmp_path / "ev.h5", 9, 1), "n_classes": 3,
            "clip_seconds": 1.0}
    out = tmp_path / "out"
    config = {"model": "passt-s", "scale": "smoke", "data": data, "epochs": 2, "batch_size": 8,
              "progress": False, "device": "cpu", "threads": 1, "out_dir": str(out)}
    (tmp_path / "run.json").write_text(json.dumps(config))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(tmp_path / "worker.py"),
         str(tmp_path / "run.json"), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["params"].keys() == r1["params"].keys()
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), f"{k} differs across ranks"
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    steps = [int(s["step"]) for s in ckpt["optimizer"]["state"].values()]
    assert steps and set(steps) == {4}  # 16 clips / global batch 8 = 2 steps x 2 epochs
    assert all(torch.equal(v, r0["params"][k]) for k, v in ckpt["model"].items())
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["n_eval"] == 9 and "eval_map" in m
    assert len((out / "history.csv").read_text().splitlines()) == 3
    assert not (tmp_path / "rank1_out").exists()  # rank 1 wrote nothing
    # Both ranks saw the same (reduced) training loss.
    assert [h["train_loss"] for h in r0["history"]] == [h["train_loss"] for h in r1["history"]]
