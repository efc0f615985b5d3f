import pytest

from passt_lib.phases import Phase, format_schedule, parse_schedule, total_epochs


def test_compact_string_parses_to_phases():
    phases = parse_schedule("pool:4x2,pool:2x2,full:4")
    assert phases == [Phase("pool", 4, 2), Phase("pool", 2, 2), Phase("full", 1, 4)]
    assert total_epochs(phases) == 8
    assert all(p.restart_lr for p in phases)


def test_flags_parse():
    p = parse_schedule("pool:4x3:max:keep-lr:patchout-off,full:1")[0]
    assert (p.method, p.factor, p.epochs) == ("pool", 4, 3)
    assert p.pool_mode == "max" and p.restart_lr is False and p.patchout == "off"


@pytest.mark.parametrize("s", [
    "full:3",
    "pool:4x2,pool:2x2,full:4",
    "frame_shift:2x1,full:1",
    "patchify:8x5:keep-lr,frame_shift:4x1:patchout-keep,full:2",
    "pool:4x2:max,full:2:keep-lr",
])
def test_format_round_trip(s):
    phases = parse_schedule(s)
    assert format_schedule(phases) == s
    assert parse_schedule(format_schedule(phases)) == phases


def test_list_and_dict_forms_match_string():
    s = parse_schedule("patchify:2x3,full:1")
    assert parse_schedule([{"method": "patchify", "factor": 2, "epochs": 3},
                           {"method": "full", "epochs": 1}]) == s
    assert parse_schedule([Phase("patchify", 2, 3), "full:1"]) == s


def test_none_means_fine_only():
    assert parse_schedule(None, epochs=5) == [Phase("full", 1, 5)]
    with pytest.raises(ValueError, match="epochs"):
        parse_schedule(None)


@pytest.mark.parametrize("s, match", [
    ("pool:4x2", "last phase must be full"),
    ("full:2,pool:2x2", "last phase must be full"),
    ("shift:2x2,full:1", "unknown method 'shift'"),
    ("pool:2,full:1", "FACTORxEPOCHS"),
    ("pool:1x2,full:1", "factor >= 2"),
    ("full:2x2", "factor 1"),
    ("pool:ax2,full:1", "factor must be an integer"),
    ("full:0", "epochs must be an int >= 1"),
    ("frame_shift:2x1:max,full:1", "only applies to method 'pool'"),
    ("pool:2x1:fast,full:1", "unknown flag 'fast'"),
    ("pool", "cannot parse"),
    ("", "needs `epochs`"),
])
def test_bad_schedules_raise(s, match):
    with pytest.raises(ValueError, match=match):
        parse_schedule(s)


def test_unknown_dict_key_raises():
    with pytest.raises(ValueError, match="unknown phase keys"):
        parse_schedule([{"method": "full", "epochs": 1, "lr": 3}])


def test_phase_is_frozen_and_validated():
    p = Phase("pool", 2, 1)
    with pytest.raises(AttributeError):
        p.factor = 4
    with pytest.raises(ValueError, match="pool_mode"):
        Phase("pool", 2, 1, pool_mode="median")
    with pytest.raises(ValueError, match="patchout policy"):
        Phase("pool", 2, 1, patchout="half")


def test_benchmark_schedules_keep_the_epoch_budget():
    from passt_lib.bench.coarse_to_fine import FINE, schedules

    plan = schedules(8, 4, ["pool", "patchify"], [2, 3])
    assert plan[0] == (FINE, "full:8")
    assert ("pool", "pool:4x4,full:4") in plan
    assert ("patchify", "patchify:4x2,patchify:2x2,full:4") in plan  # as the study builds it
    assert all(total_epochs(parse_schedule(s)) == 8 for _, s in plan)
    with pytest.raises(ValueError, match="3-phase"):
        schedules(8, 2, ["pool"], [3])


def test_benchmark_summary_savings():
    from passt_lib.bench.coarse_to_fine import FINE, summarize

    def row(method, schedule, seed, flops, sec, m):
        return {"method": method, "schedule": schedule, "seed": seed, "train_flops": flops,
                "train_seconds": sec, "train_cpu_seconds": sec, "eval_map": m}

    rows = [row(FINE, "full:2", s, 100.0, 10.0, 0.5 + 0.1 * s) for s in (0, 1)]
    rows += [row("pool", "pool:4x1,full:1", s, 60.0, 7.0, 0.4) for s in (0, 1)]
    out = {r["schedule"]: r for r in summarize(rows)}
    assert out["full:2"]["flops_saving"] == 0
    assert out["pool:4x1,full:1"]["flops_saving"] == pytest.approx(0.4)
    assert out["pool:4x1,full:1"]["time_saving"] == pytest.approx(0.3)
    assert out["full:2"]["map_mean"] == pytest.approx(0.55)
    assert out["full:2"]["map_sd"] == pytest.approx(0.0707, abs=1e-3)


def test_phases_in_steps():
    phases = parse_schedule("pool:4x300steps,pool:2x1,full:500steps:keep-lr")
    assert phases[0] == Phase("pool", 4, steps=300) and phases[0].epochs is None
    assert phases[1] == Phase("pool", 2, 1) and phases[1].steps is None
    assert phases[2] == Phase("full", steps=500, restart_lr=False)
    assert format_schedule(phases) == "pool:4x300steps,pool:2x1,full:500steps:keep-lr"
    assert parse_schedule(format_schedule(phases)) == phases
    assert [p.n_steps(7) for p in phases] == [300, 7, 500]
    assert total_epochs(phases) is None  # depends on the data: steps per epoch
    assert parse_schedule([{"method": "pool", "factor": 4, "steps": 30},
                           {"method": "full", "epochs": 2}])[0].steps == 30
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        parse_schedule("pool:4x0steps,full:1")
    with pytest.raises(ValueError, match="steps must be an integer"):
        parse_schedule("pool:4xsteps,full:1")
    with pytest.raises(ValueError, match="epochs or steps, not both"):
        Phase("pool", 4, epochs=2, steps=10)


def test_standard_schedules():
    from passt_lib.phases import standard_schedule

    assert standard_schedule("pool", "2-phase", 6) == "pool:4x3,full:3"
    assert standard_schedule("frame_shift", "3-phase", 6) == \
        "frame_shift:4x1,frame_shift:2x2,full:3"
    assert standard_schedule("pool", "2-phase", 8, factor=2, coarse_fraction=0.25) == \
        "pool:2x2,full:6"
    for s in ("pool:4x3,full:3", standard_schedule("patchify", "3-phase", 9)):
        assert parse_schedule(s)[-1].is_full
    with pytest.raises(ValueError, match="even factor >= 4"):
        standard_schedule("pool", "3-phase", 8, factor=2)
    with pytest.raises(ValueError, match="unknown schedule shape"):
        standard_schedule("pool", "4-phase", 8)
    with pytest.raises(ValueError, match="compresses with one of"):
        standard_schedule("full", "2-phase", 8)
    with pytest.raises(ValueError, match="at least 2 epochs"):
        standard_schedule("pool", "2-phase", 1)
