"""The notebooks: committed clean, parameters declared properly, and every one runs at smoke scale."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml

from passt_lib.atomic import read_json
from passt_lib.study import experiments as E
from passt_lib.study import figures, runner
from passt_lib.study import params as P
from passt_lib.study.notebook_params import notebook_parameters, parse_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "passt-study"


def test_all_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == list(P.NOTEBOOK_PARAMS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"
    assert "papermill" not in nb.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_title_then_parameters_cell_and_consistent(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), \
        "a reader sees the title first"
    assert "parameters" in nb.cells[1].metadata.get("tags", []), "then the parameters cell"
    ours = notebook_parameters(path)
    assert list(papermill.inspect_notebook(str(path))) == list(ours)  # papermill reads them too
    for name in ("scale", "seed", "out_dir"):
        assert name in ours, f"{path.name} lacks the {name!r} parameter"
    assert ours["scale"].default == "embedded"
    # The notebook's parameters are its contract's fields, with the same defaults.
    assert P.notebook_mismatches(P.NOTEBOOK_PARAMS[path.stem], ours) == []


def test_a_default_changed_on_one_side_only_is_found():
    cell = (ROOT / "notebooks/10_patchout.ipynb")
    declared = notebook_parameters(cell)
    assert P.notebook_mismatches(P.PatchoutParams, declared) == []
    source = "\n".join(f"{p.name}: {p.type} = {p.default!r}" for p in declared.values())
    changed = parse_parameters(source.replace('amount: float = 0.5', 'amount: float = 0.4')
                               .replace('seed: int = 0', 'seed: int = 0\nextra: int = 1'))
    assert P.notebook_mismatches(P.PatchoutParams, changed) == [
        "'extra' is declared by the notebook but is no field of PatchoutParams",
        "'amount': the notebook's default is 0.4, PatchoutParams's 0.5"]
    del changed["preset"]
    assert "'preset' is a field of PatchoutParams the notebook does not declare" in \
        P.notebook_mismatches(P.PatchoutParams, changed)


def test_undeclared_parameter_rejected(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "notebook": str(ROOT / "notebooks/10_patchout.ipynb"),
                                     "grid": {"patchuot": ["time"]}}))
    with pytest.raises(ValueError, match=r"'patchuot'.*declares: scale, seed"):
        runner.load_study(study, results=tmp_path / "runs", kernel_name=KERNEL)


@pytest.mark.parametrize("cls, bad, match", [
    (P.PatchoutParams, {"patchout": "sideways"}, "patchout='sideways'"),
    (P.PatchoutParams, {"amount": 1.5}, "fraction of patches"),
    (P.PatchoutParams, {"scale": "huge"}, "scale='huge'"),
    (P.CoarseToFineParams, {"method": "zoom"}, "method='zoom'"),
    (P.CoarseToFineParams, {"schedule": "3-phase", "factor": 3}, "even"),
    (P.TourParams, {"factor": 1}, "factor"),
])
def test_invalid_values_fail_with_a_clear_message(cls, bad, match):
    with pytest.raises(ValueError, match=match):
        cls(**bad)


def test_patchout_amounts_drop_the_asked_fraction():
    grid = (5, 29)
    assert E.patchout_amounts(grid, "none", 0.0) == {"s_patchout_t": 0, "s_patchout_f": 0,
                                                     "u_patchout": 0}
    assert E.patchout_amounts(grid, "time", 0.6)["s_patchout_t"] == 17
    assert E.patchout_amounts(grid, "unstructured", 0.3)["u_patchout"] == 44
    s = E.patchout_amounts(grid, "structured", 0.6)
    kept = (5 - s["s_patchout_f"]) * (29 - s["s_patchout_t"])
    assert abs(1 - kept / 145 - 0.6) < 0.1


def test_build_schedule():
    assert E.build_schedule("none", "2-phase", 8) == "full:8"
    assert E.build_schedule("pool", "2-phase", 8) == "pool:4x4,full:4"
    assert E.build_schedule("patchify", "3-phase", 8) == "patchify:4x2,patchify:2x2,full:4"
    with pytest.raises(ValueError, match="at least 2 epochs"):
        E.build_schedule("pool", "2-phase", 1)


# ----------------------------------------------------------------------------- executing


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.kernelspec import find_kernel_specs

    if KERNEL not in find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name",
                        KERNEL], check=True, capture_output=True)
    return KERNEL


SMOKE_STUDIES = {
    "tour": {"notebook": "notebooks/00_tour.ipynb", "grid": {"seed": [0, 1]}},
    "patchout": {"notebook": "notebooks/10_patchout.ipynb",
                 "grid": [{"patchout": ["none"], "amount": [0.0]},
                          {"patchout": ["structured"], "amount": [0.5]},
                          {"preset": ["passt-s"], "patchout": ["preset"], "amount": [0.0]}]},
    "coarse_to_fine": {"notebook": "notebooks/20_coarse_to_fine.ipynb",
                       "fixed": {"epochs": 2, "factor": 2}, "grid": {"method": ["none", "pool"]}},
    "speed": {"notebook": "notebooks/30_speed.ipynb",
              "fixed": {"models": ["ast", "passt-s"], "steps": 1, "warmup": 1,
                        "scaling_seconds": [0.5, 1.0], "scaling_models": ["ast", "passt-s"]}, "grid": {"seed": [0]}},
    "downstream": {"notebook": "notebooks/40_downstream.ipynb", "fixed": {"folds": 2},
                   "grid": {"seed": [0]}},
}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, kernel):
    """Every ablation notebook executed by the runner at scale='smoke', two at a time."""
    tmp = tmp_path_factory.mktemp("smoke")
    specs = []
    for name, spec in SMOKE_STUDIES.items():
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **spec,
                                        "notebook": str(ROOT / spec["notebook"])}))
        specs += runner.load_study(path, scale="smoke", results=tmp / "runs", kernel_name=kernel,
                                   threads=1).runs
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(runner.execute_run, specs))
    return tmp, specs, results


@pytest.mark.slow
def test_every_notebook_runs_at_smoke_scale(smoke_runs, drawn):
    _, specs, results = smoke_runs
    for spec, r in zip(specs, results):
        failed = read_json(Path(spec.run_dir) / "failed.json")
        assert r["status"] == "done", (spec.study, failed and failed["traceback"])
        d = Path(spec.run_dir)
        for f in ("params.json", "env.json", "metrics.json", spec.output_notebook.name):
            assert (d / f).exists(), f"{spec.study}: {f} missing"
        env = read_json(d / "env.json")
        assert env["versions"]["torch"] and env["commit"]
        if spec.study in ("patchout", "coarse_to_fine"):
            assert env["device"] == "cpu" and env["precision"] in ("fp32", "bf16")  # "auto" resolved
    by = {(s.study, s.params.get("patchout"), s.params.get("method")): read_json(
        Path(s.run_dir) / "metrics.json") for s in specs}
    none, structured = by[("patchout", "none", None)], by[("patchout", "structured", None)]
    assert structured["tokens_train"] < none["tokens_train"] == none["tokens_eval"]
    assert 0 <= structured["eval_map"] <= 1 and structured["samples_per_s"] > 0
    fine, pool = by[("coarse_to_fine", None, "none")], by[("coarse_to_fine", None, "pool")]
    assert pool["train_flops"] < fine["train_flops"]
    assert [p["method"] for p in pool["phases"]] == ["pool", "full"]
    tours = [s for s in specs if s.study == "tour"]
    for fig in ("clip", "patch_grid", "encodings", "patchout", "compression"):
        assert drawn(Path(tours[0].run_dir) / f"{fig}.png").shape[1] > 500, fig
    # another seed draws other patches from the same dataset: the same clip
    a, b = (read_json(Path(s.run_dir) / "metrics.json") for s in tours)
    assert a["clip"] == b["clip"] and a["tags"] == b["tags"]
    assert (Path(tours[0].run_dir) / "patchout.png").read_bytes() != \
        (Path(tours[1].run_dir) / "patchout.png").read_bytes()
    # 40_downstream: keywords fine-tuned fold by fold from the mixtures model it pre-trained
    down = next(s for s in specs if s.study == "downstream")
    m = read_json(Path(down.run_dir) / "metrics.json")
    accs = [f["eval_accuracy"] for f in m["folds"].values()]
    assert len(accs) == 2 and m["eval_accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    assert (Path(down.run_dir) / "folds" / "fold-2" / "metrics.json").exists()
    # patchout "preset": PaSST-S with its own patchout trains on fewer tokens
    preset = by[("patchout", "preset", None)]
    assert preset["tokens_train"] < none["tokens_train"]


@pytest.mark.slow
def test_executed_notebooks_show_each_figure_once_and_no_stderr(smoke_runs):
    """What a reader of an executed notebook sees: every figure once (not the inline copy and
    the cell's value), no warnings or other stderr in any cell, no echoed Python objects."""
    _, specs, _ = smoke_runs
    for spec in specs:
        nb = nbformat.read(str(spec.output_notebook), as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            outs = cell.get("outputs", [])
            assert not [o for o in outs if o.get("name") == "stderr"], (spec.study, i, outs)
            images = [o for o in outs if "image/png" in o.get("data", {})]
            assert len(images) <= 1, (spec.study, i, len(images))
            echoes = [o["data"]["text/plain"] for o in outs if o.get("output_type") ==
                      "execute_result" and set(o["data"]) == {"text/plain"}]
            assert not any(e.startswith(("Run(", "PosixPath(", "[PosixPath(")) for e in echoes), \
                (spec.study, i, echoes)


@pytest.mark.slow
def test_figures_notebook_and_cli_are_byte_stable(smoke_runs, kernel, tmp_path):
    tmp, _, _ = smoke_runs
    out = tmp_path / "results"
    papermill.execute_notebook(
        str(ROOT / "notebooks/90_figures.ipynb"), str(tmp_path / "90.ipynb"),
        parameters={"scale": "smoke", "runs": str(tmp / "runs"), "results": str(out),
                    "out_dir": str(tmp_path / "fig_run")},
        kernel_name=kernel, cwd=str(ROOT), progress_bar=False)
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.stem for p in pngs} >= {"patchout_accuracy_vs_speed", "c2f_accuracy_vs_flops",
                                      "table1_speed", "scaling", "patchout_learning_curves",
                                      "c2f_learning_curves"}  # drawn from the runs' histories
    assert all(p.with_suffix(".pdf").exists() for p in pngs)
    table = (out / "tables" / "patchout.csv").read_text()
    assert table.startswith("# source: 3 runs; commits ")
    report = (out / "REPORT.md").read_text()
    assert "Claim 1" in report and "3.8x" in report and "structured" in report
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted((out / "figures").iterdir())}
    assert figures.main(["--runs", str(tmp / "runs"), "--results", str(out), "--scale", "smoke"]) == 0
    assert digest == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digest}


# ----------------------------------------------------------------------------- figures, no kernels


def _fake_run(root: Path, study: str, notebook: str, params: dict, metrics: dict | None,
              hash_ok: bool = True) -> None:
    from passt_lib.atomic import atomic_write_json
    from passt_lib.rundir import config_hash

    h = config_hash(notebook, params)
    d = root / study / h
    atomic_write_json(d / "params.json", {"notebook": notebook, "config_hash": h, "params": params})
    atomic_write_json(d / "env.json", {"commit": "abc1234def", "dirty": False,
                                       "versions": {"torch": "2.11.0"}})
    if metrics is not None:
        atomic_write_json(d / "metrics.json", {"config_hash": h if hash_ok else "stale", **metrics})


def test_figures_from_stored_runs_only_count_finished_ones(tmp_path):
    runs = tmp_path / "runs"
    for seed, (m_none, m_s) in enumerate([(0.30, 0.32), (0.34, 0.30)]):
        base = {"scale": "embedded", "seed": seed, "preset": "passt-b"}
        _fake_run(runs, "patchout", "10_patchout", {**base, "patchout": "none", "amount": 0.0},
                  {"eval_map": m_none, "samples_per_s": 100.0, "step_memory_mib_per_sample": 10.0,
                   "tokens_train": 147, "dropped_fraction": 0.0, "train_seconds": 10.0})
        _fake_run(runs, "patchout", "10_patchout",
                  {**base, "patchout": "structured", "amount": 0.6},
                  {"eval_map": m_s, "samples_per_s": 180.0 + 2 * seed, "step_memory_mib_per_sample": 6.0,
                   "tokens_train": 62, "dropped_fraction": 0.59, "train_seconds": 6.0})
    base = {"scale": "embedded", "seed": 9, "preset": "passt-b", "patchout": "time"}
    _fake_run(runs, "patchout", "10_patchout", {**base, "amount": 0.3}, None)  # killed run
    _fake_run(runs, "patchout", "10_patchout", {**base, "amount": 0.6}, {"eval_map": 9.0},
              hash_ok=False)  # stale metrics from other parameters
    df = figures.load_runs(runs, "patchout", "embedded")
    assert len(df) == 4 and set(df["patchout"]) == {"none", "structured"}
    s = figures.summarize(df, ["patchout", "amount"], ["eval_map", "samples_per_s"])
    # a metric older runs did not record summarises to NaN instead of failing
    old = figures.summarize(df, ["patchout"], ["eval_map", "not_recorded_then"])
    assert old["not_recorded_then_mean"].isna().all() and old["eval_map_mean"].notna().all()
    row = s[s["patchout"] == "structured"].iloc[0]
    assert row["n_seeds"] == 2 and row["eval_map_mean"] == pytest.approx(0.31)
    assert row["eval_map_std"] == pytest.approx(0.01414, abs=1e-4)
    made = figures.render_all(runs, tmp_path / "out", scale="embedded")
    assert made["n_runs"] == 4
    report = made["report"].read_text()
    # paired per seed: speed-ups 1.80 and 1.82; mAP differences +0.02 and -0.04
    assert "| structured patchout (59% dropped) | 62 | 181.0 ± 1.4 | 1.81x [" in report
    assert "| -0.010 [-0.391, +0.371] | inconclusive | - | 2 |" in report  # no histories: no equal-FLOPs column
    assert "95% Student t interval" in report
    assert "No coarse-to-fine runs found" in report and "No speed run found" in report
    assert (tmp_path / "out/tables/patchout.csv").read_text().startswith(
        "# source: 4 runs; commits abc1234def; torch 2.11.0")


def test_figures_without_runs_keep_the_committed_results(tmp_path, capsys):
    """A fresh clone has committed figures but no runs: `passt-study figures` says what to do
    and leaves results/ untouched instead of writing an empty report."""
    out = tmp_path / "results"
    out.mkdir()
    (out / "REPORT.md").write_text("committed report\n")
    rc = figures.main(["--runs", str(tmp_path / "runs"), "--results", str(out)])
    assert rc == 1
    assert "make study" in capsys.readouterr().err
    assert (out / "REPORT.md").read_text() == "committed report\n"
    assert sorted(p.name for p in out.iterdir()) == ["REPORT.md"]


def test_report_reads_the_gpu_numbers_and_date_from_the_committed_tables():
    from passt_lib.study.report import report

    gpu = figures.gpu_tables()
    made = report(pd.DataFrame(), pd.DataFrame(), None, "embedded", {}, gpu=gpu)
    assert "on 2026-12-01 (bf16, batch 128;" in made and "PaSST-S 2.4x AST eager, 2.6x compiled" in made
    eager = gpu["eager"].copy()
    eager.loc[eager["preset"] == "passt-s", "train_x_ast"] = 3.14
    eager["date"] = "2030-01-02T00:00:00Z"
    made = report(pd.DataFrame(), pd.DataFrame(), None, "embedded", {},
                  gpu={**gpu, "eager": eager})
    assert "on 2030-01-02 (" in made and "PaSST-S 3.1x AST eager" in made
    assert "2026-12-01" not in made and "2.4x" not in made
