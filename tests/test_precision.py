"""The precision policy: "auto" detection, explicit overrides, errors, and the autocast context."""

import pytest
import torch

from passt_lib import precision as P


@pytest.fixture
def native_bf16(monkeypatch):
    """Set what the CPU is said to support: ``native_bf16(True|False)``."""

    def set_(value: bool):
        # has_native_bf16 looks the (functools.cache'd) helper up at call time, so replacing
        # the module attribute bypasses the real, cached /proc/cpuinfo answer.
        monkeypatch.setattr(P, "_cpu_has_native_bf16", lambda: value)

    return set_


@pytest.fixture
def fresh_cpu_cache():
    """Clear the cached CPU answer before and after, so a fake /proc/cpuinfo never leaks."""
    P._cpu_has_native_bf16.cache_clear()
    yield
    P._cpu_has_native_bf16.cache_clear()


# -- "auto" ---------------------------------------------------------------------------------
@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_native_bf16_on_cpu(native_bf16, native, expected):
    native_bf16(native)
    assert P.has_native_bf16("cpu") is native
    assert P.resolve_precision("auto", "cpu") == expected
    assert P.resolve_precision("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize("native", [True, False])
def test_explicit_choice_overrides_auto(native_bf16, native):
    native_bf16(native)
    assert P.resolve_precision("fp32", "cpu") == "fp32"
    assert P.resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize("capability, expected", [((8, 0), "bf16"), ((9, 0), "bf16"),
                                                  ((7, 5), "fp32")])
def test_auto_on_cuda_follows_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert P.resolve_precision("auto", "cuda") == expected
    assert P.resolve_precision("fp16", "cuda") == "fp16"  # fp16 is allowed on CUDA


def test_auto_without_cuda_or_on_other_devices_is_fp32(monkeypatch, native_bf16):
    native_bf16(True)  # the CPU answer must not leak into other device types
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert P.resolve_precision("auto", "cuda") == "fp32"
    assert P.resolve_precision("auto", "meta") == "fp32"


@pytest.mark.parametrize("cpuinfo, expected", [
    ("flags\t: fpu sse avx2 avx512f avx512_bf16\n", True),
    ("flags\t: fpu sse avx2 amx_bf16 amx_tile\n", True),
    ("flags\t: fpu sse avx2 avx512f\n", False),
])
def test_cpu_detection_reads_cpuinfo_flags(monkeypatch, fresh_cpu_cache, tmp_path, cpuinfo,
                                           expected):
    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    real_open = open
    monkeypatch.setattr(P, "open", lambda path, *a, **k: real_open(fake, *a, **k), raising=False)
    assert P._cpu_has_native_bf16() is expected
    assert P.resolve_precision("auto", "cpu") == ("bf16" if expected else "fp32")


def test_cpu_detection_without_cpuinfo_is_false(monkeypatch, fresh_cpu_cache):
    def no_file(*a, **k):
        raise FileNotFoundError("/proc/cpuinfo")

    monkeypatch.setattr(P, "open", no_file, raising=False)
    assert P._cpu_has_native_bf16() is False
    assert P.resolve_precision("auto", "cpu") == "fp32"


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_fp16_on_cpu_is_an_error_naming_the_device(device):
    with pytest.raises(ValueError) as info:
        P.resolve_precision("fp16", device)
    msg = str(info.value)
    assert "fp16" in msg and "cpu" in msg.lower() and "cuda" in msg.lower()
    with pytest.raises(ValueError, match="fp16"):
        P.autocast("fp16", device)


@pytest.mark.parametrize("bad", ["fp8", "float32", "", "BF16"])
def test_unknown_precision_lists_the_choices(bad):
    with pytest.raises(ValueError) as info:
        P.resolve_precision(bad, "cpu")
    msg = str(info.value)
    assert repr(bad) in msg
    for choice in P.PRECISIONS:
        assert choice in msg, choice
    with pytest.raises(ValueError, match="unknown precision"):
        P.autocast(bad, "cpu")


# -- autocast -------------------------------------------------------------------------------
def _matmul_dtype():
    a = torch.randn(4, 8)
    b = torch.randn(8, 3)
    return (a @ b).dtype


def test_fp32_autocast_leaves_matmul_in_float32():
    with P.autocast("fp32", "cpu"):
        assert _matmul_dtype() == torch.float32
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_autocast_makes_cpu_matmul_bfloat16():
    with P.autocast("bf16", "cpu"):
        assert _matmul_dtype() == torch.bfloat16
    assert _matmul_dtype() == torch.float32  # and only inside the context


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_autocast_follows_detection(native_bf16, native, dtype):
    native_bf16(native)
    with P.autocast("auto", "cpu"):
        assert _matmul_dtype() == dtype
