"""The training data pipeline: workers that live for the whole run, batches on the device,
results that do not depend on the number of workers, compiled training."""

import json
import os

import numpy as np
import pytest
import torch
from tones import tiny_config

from passt_lib import train as T
from passt_lib.data.pipeline import Split, TrainBatches, resolve_num_workers
from passt_lib.data.sampler import ShardedSampler


class PidClips(torch.utils.data.Dataset):
    """Clips whose samples are the pid of the process that read them, and their index."""

    def __len__(self):
        return 24

    def __getitem__(self, i):
        return torch.tensor([float(os.getpid()), float(i)]), torch.zeros(2), str(i)


def test_workers_live_across_epochs_and_batches_follow_the_sampler():
    ds = PidClips()
    split = Split(ds, torch.zeros(len(ds), 2))
    sampler = ShardedSampler(len(ds), seed=3)
    batches = TrainBatches(split, sampler, 4, clip_samples=2, num_workers=2,
                           device=torch.device("cpu"))
    pids, order = set(), []
    for e in range(3):
        got = list(batches.epoch(e, 5))
        assert len(got) == 5  # the first n batches of the epoch
        order.append(torch.cat([w[:, 1] for w, _ in got]).long().tolist())
        pids |= {int(p) for w, _ in got for p in w[:, 0]}
        sampler.set_epoch(e)
        assert order[-1] == list(sampler)[:20]  # the epoch's own order
    assert len(pids) == 2 and os.getpid() not in pids  # the same two workers, every epoch
    assert order[0] != order[1]
    batches.start(3, 2)  # started early (before an evaluation), then continued
    assert len(list(batches.epoch(3, 2))) == 2
    assert batches.wait_seconds > 0


def test_auto_workers_follow_the_cores_and_the_device(monkeypatch):
    from passt_lib.data import pipeline

    monkeypatch.setattr(pipeline, "available_cores", lambda: 16)
    assert resolve_num_workers("auto", device_type="cuda") == 15
    assert resolve_num_workers("auto", device_type="cuda", local_world=4) == 3
    assert resolve_num_workers("auto", device_type="cpu") == 16
    assert resolve_num_workers("auto", threads=1, device_type="cpu") == 1
    assert resolve_num_workers("auto", threads=1, device_type="cuda") == 1
    assert resolve_num_workers(3, device_type="cuda") == 3


def _trajectory(res):
    return [(r["train_loss"], r["eval_map"], r["lr"]) for r in res.history]


@pytest.mark.slow
def test_workers_persist_across_phases_and_do_not_change_results(tiny_data, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    """Clips decoded by 2 persistent workers (not preloaded) train exactly as clips decoded in
    the training process; one set of workers serves every epoch of both phases; a run killed
    after its first epoch and resumed ends as the uninterrupted one."""
    from torch.utils.data import dataloader

    started = []
    init = dataloader._MultiProcessingDataLoaderIter.__init__

    def spy(self, loader):
        started.append(loader.persistent_workers)
        init(self, loader)

    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "__init__", spy)
    kw = dict(epochs=None, schedule="pool:2x1,full:1", preload=False)
    data = {w: tiny_data.replace(num_workers=w) for w in (0, 2)}
    in_process = T.train(tiny_config(data[0], tmp_path / "w0", **kw))
    workers = T.train(tiny_config(data[2], tmp_path / "w2", **kw))
    assert _trajectory(workers) == _trajectory(in_process)
    assert started.count(True) == 1  # the training loader started its workers once
    T.train(tiny_config(data[2], tmp_path / "r", stop_after_epoch=1, **kw))
    resumed = T.train(tiny_config(data[2], tmp_path / "r", resume=True, **kw))
    assert _trajectory(resumed) == _trajectory(workers)
    assert json.loads((tmp_path / "w2" / "metrics.json").read_text())["data_wait_seconds"] >= 0


@pytest.mark.slow
def test_compiled_training_matches_eager_across_phases(tiny_data, tmp_path):  # noqa: F811
    """compile=True (torch.compile, inductor on the CPU) trains a 2-phase schedule (the
    pooled phase is a new input size: a recompile) to the eager losses and mAP."""
    kw = dict(epochs=None, schedule="pool:2x1,full:1")
    eager = T.train(tiny_config(tiny_data, tmp_path / "eager", compile=False, **kw))
    compiled = T.train(tiny_config(tiny_data, tmp_path / "compiled", compile=True, **kw))
    for a, b in zip(eager.history, compiled.history):
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-3)
        np.testing.assert_allclose(b["eval_map"], a["eval_map"], atol=1e-2)
    assert [r["method"] for r in compiled.history] == ["pool", "full"]
