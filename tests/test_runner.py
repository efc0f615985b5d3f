"""The study runner: validation, failure isolation, skip-if-done, resume, atomic writes, submitit."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from passt_lib.atomic import atomic_write_json, read_json
from passt_lib.rundir import config_hash, is_done
from passt_lib.study import runner
from passt_lib.study.notebook_params import notebook_parameters, parse_parameters, resolve_params

KERNEL = "python3"  # the venv's own interpreter; the tiny notebooks need nothing else

PARAMS_CELL = '''\
x: int = 1  # the value to record
fail_on: int = -1  # raise when x equals this
label: str = "a"  # a free label
out_dir: str = ""  # where to write
'''

BODY = '''\
from passt_lib.rundir import start_run
run = start_run(out_dir, "tiny", {"x": x, "fail_on": fail_on, "label": label})
if x == fail_on:
    raise RuntimeError(f"asked to fail at x={x}")
import os
with open(os.path.join(out_dir, "log.txt"), "a") as f:
    f.write("executed\\n")
run.finish({"value": x * 10})
'''


def make_notebook(path: Path, body: str = BODY) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(PARAMS_CELL)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# tiny"), p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def make_study(tmp_path: Path, grid, fixed=None, body: str = BODY) -> Path:
    make_notebook(tmp_path / "tiny.ipynb", body)
    spec = {"name": "tiny", "notebook": str(tmp_path / "tiny.ipynb"), "grid": grid}
    if fixed:
        spec["fixed"] = fixed
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def load(tmp_path: Path, path: Path) -> runner.Study:
    return runner.load_study(path, results=tmp_path / "runs", kernel_name=KERNEL)


# ----------------------------------------------------------------------------- pure parts


def test_parse_parameters_reads_type_default_help():
    p = parse_parameters(PARAMS_CELL)
    assert list(p) == ["x", "fail_on", "label", "out_dir"]
    assert (p["x"].type, p["x"].default, p["x"].help) == ("int", 1, "the value to record")
    assert p["label"].default == "a"


def test_parse_parameters_rejects_untyped_line():
    with pytest.raises(ValueError, match="name: type = value"):
        parse_parameters("x = 1\n")


def test_resolve_params_rejects_unknown_name_listing_valid_ones():
    p = parse_parameters(PARAMS_CELL)
    with pytest.raises(ValueError, match=r"'xx'.*declares: x, fail_on, label, out_dir"):
        resolve_params(p, {"xx": 3})


def test_resolve_params_checks_types():
    p = parse_parameters(PARAMS_CELL + "lr: float = 0.1  # rate\n")
    assert resolve_params(p, {"lr": 1})["lr"] == 1.0 and isinstance(resolve_params(p, {"lr": 1})["lr"], float)
    with pytest.raises(ValueError, match="'x' expects int"):
        resolve_params(p, {"x": "3"})
    with pytest.raises(ValueError, match="'x' expects int"):
        resolve_params(p, {"x": True})


def test_expand_grid_product_and_union():
    runs = runner.expand_grid([{"a": [1, 2], "b": ["u", "v"]}, {"a": [9]}])
    assert runs == [{"a": 1, "b": "u"}, {"a": 1, "b": "v"}, {"a": 2, "b": "u"},
                    {"a": 2, "b": "v"}, {"a": 9}]
    with pytest.raises(ValueError, match="non-empty list"):
        runner.expand_grid({"a": 3})


def test_config_hash_is_canonical():
    assert config_hash("nb.ipynb", {"a": 1, "b": 2}) == config_hash("nb", {"b": 2, "a": 1})
    assert config_hash("nb", {"a": 1}) != config_hash("nb", {"a": 2})
    assert config_hash("nb", {"a": 1}) != config_hash("other", {"a": 1})


def test_study_typo_fails_before_anything_runs(tmp_path):
    path = make_study(tmp_path, {"x": [1], "lable": ["b"]})
    with pytest.raises(ValueError, match=r"'lable'.*declares: x, fail_on, label, out_dir"):
        load(tmp_path, path)
    assert not (tmp_path / "runs").exists()
    assert runner.main([str(path), "--results", str(tmp_path / "runs"), "--kernel", KERNEL]) == 2


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    # A failure between writing the temporary file and renaming it leaves the old file intact.
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(target, {"a": 2})
    monkeypatch.undo()
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_is_done_needs_matching_hash(tmp_path):
    assert not is_done(tmp_path, "abc")
    atomic_write_json(tmp_path / "metrics.json", {"config_hash": "other"})
    assert not is_done(tmp_path, "abc")
    atomic_write_json(tmp_path / "metrics.json", {"config_hash": "abc"})
    assert is_done(tmp_path, "abc")


# ----------------------------------------------------------------------------- executing


@pytest.mark.slow
def test_failure_isolation_skip_if_done_and_retry(tmp_path):
    path = make_study(tmp_path, {"x": [1, 2, 3]}, fixed={"fail_on": 2})
    study = load(tmp_path, path)
    res = runner.run_study(study, workers=2, progress=False)
    by_x = {s.params["x"]: s for s in study.runs}
    assert sorted(res.done) == sorted([by_x[1].hash, by_x[3].hash])
    assert list(res.failed) == [by_x[2].hash] and "asked to fail at x=2" in res.failed[by_x[2].hash]
    failed = read_json(Path(by_x[2].run_dir) / "failed.json")
    assert "RuntimeError" in failed["error"]
    assert (Path(by_x[2].run_dir) / "tiny.ipynb").exists()  # the executed notebook, kept
    assert read_json(Path(by_x[3].run_dir) / "metrics.json")["value"] == 30

    # Rerun: nothing executes again (done runs skipped, the failed one reported, not retried).
    t0 = time.perf_counter()
    res2 = runner.run_study(load(tmp_path, path), progress=False)
    assert time.perf_counter() - t0 < 2.0
    assert res2.done == [] and sorted(res2.skipped) == sorted(res.done)
    assert list(res2.failed) == [by_x[2].hash]
    for x in (1, 3):
        assert (Path(by_x[x].run_dir) / "log.txt").read_text() == "executed\n"

    # The CLI exits non-zero and lists the failure.
    rc = runner.main([str(path), "--results", str(tmp_path / "runs"), "--kernel", KERNEL,
                      "--no-progress"])
    assert rc == 1


@pytest.mark.slow
def test_resume_after_kill_runs_only_unfinished(tmp_path):
    path = make_study(tmp_path, {"x": [1, 2, 3]})
    study = load(tmp_path, path)
    first, second, third = study.runs
    # Simulate a kill: run 1 finished (its files written in-process, as the notebook would);
    # run 2 was killed mid-way (params, a partial notebook and a stray temporary file, but
    # no metrics.json); run 3 never started.
    from passt_lib.rundir import start_run

    done = start_run(first.run_dir, "tiny", first.params)
    (Path(first.run_dir) / "log.txt").write_text("executed\n")
    done.finish({"value": 10})
    d2 = Path(second.run_dir)
    d2.mkdir(parents=True)
    (d2 / "params.json").write_text("{}")
    (d2 / ".metrics.json.x.tmp").write_text('{"config_hash": "')
    (d2 / "tiny.ipynb").write_text("{ partial")
    res = runner.run_study(load(tmp_path, path), progress=False)
    assert res.skipped == [first.hash]
    assert sorted(res.done) == sorted([second.hash, third.hash]) and res.ok
    assert (Path(first.run_dir) / "log.txt").read_text() == "executed\n"  # not redone
    assert read_json(d2 / "metrics.json")["value"] == 20


def test_kernel_start_failure_is_retried(tmp_path, monkeypatch):
    path = make_study(tmp_path, {"x": [5]})
    spec = load(tmp_path, path).runs[0]
    calls = []

    def flaky(s, km=None):  # the kernel fails to start once, then the notebook runs (in-process here)
        from passt_lib.rundir import start_run

        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel didn't respond in 60 seconds")
        start_run(s.run_dir, "tiny", s.params).finish({"value": 50})

    monkeypatch.setattr(runner, "_execute_notebook", flaky)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    assert runner.execute_run(spec)["status"] == "done"
    assert len(calls) == 2


def test_failing_cell_is_not_retried(tmp_path, monkeypatch):
    from papermill.exceptions import PapermillExecutionError

    path = make_study(tmp_path, {"x": [5]})
    spec = load(tmp_path, path).runs[0]
    calls = []

    def failing(s, km=None):
        calls.append(1)
        raise PapermillExecutionError(2, 1, "ValueError: bad", "ValueError", "bad", [])

    monkeypatch.setattr(runner, "_execute_notebook", failing)
    r = runner.execute_run(spec)
    assert r["status"] == "failed" and r["error"] == "ValueError: bad" and len(calls) == 1


def test_notebook_without_metrics_counts_as_failed(tmp_path, monkeypatch):
    path = make_study(tmp_path, {"x": [5]})
    spec = load(tmp_path, path).runs[0]
    monkeypatch.setattr(runner, "_execute_notebook", lambda s, km=None: None)
    r = runner.execute_run(spec)
    assert r["status"] == "failed" and "metrics.json" in r["error"]
    assert read_json(Path(spec.run_dir) / "failed.json")["config_hash"] == spec.hash


@pytest.mark.slow
def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")
    path = make_study(tmp_path, {"x": [7]})
    study = load(tmp_path, path)
    res = runner.run_study(study, executor="slurm", submitit_cluster="local", progress=False,
                           submitit_folder=tmp_path / "submitit")
    assert res.ok, res.failed
    assert read_json(Path(study.runs[0].run_dir) / "metrics.json")["value"] == 70
    assert json.loads((Path(study.runs[0].run_dir) / "params.json").read_text())["params"]["x"] == 7


def test_cli_dry_run_lists_runs(tmp_path, capsys):
    path = make_study(tmp_path, {"x": [1, 2]})
    assert runner.main([str(path), "--results", str(tmp_path / "runs"), "--kernel", KERNEL,
                        "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("todo") == 2


def test_notebook_parameters_of_file(tmp_path):
    nb = make_notebook(tmp_path / "n.ipynb")
    assert notebook_parameters(nb)["fail_on"].default == -1
    assert sys.executable  # the kernel is the test interpreter's venv


def test_workers_keep_their_kernels_and_a_failure_gets_a_fresh_one(tmp_path):
    """4 runs on 2 workers use 2 kernels (warm kernels); a failing run's kernel is replaced, and
    the runs after it still succeed in a new one."""
    body = BODY.replace('run.finish({"value": x * 10})',
                        'run.finish({"value": x * 10, "kernel_pid": os.getpid()})')
    path = make_study(tmp_path, {"x": [1, 2, 3, 4, 5, 6], "fail_on": [3]}, body=body)
    res = runner.run_study(load(tmp_path, path), workers=2, progress=False)
    assert len(res.done) == 5 and len(res.failed) == 1
    pids = [read_json(Path(d) / "metrics.json")["kernel_pid"]
            for d in (tmp_path / "runs" / "tiny").glob("*/") if (Path(d) / "metrics.json").exists()]
    assert len(pids) == 5 and len(set(pids)) <= 3  # 2 warm kernels, and one after the failure
    assert os.getpid() not in pids
