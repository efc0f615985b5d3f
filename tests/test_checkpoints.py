"""Checkpoints: reference weights load into PaSST with equal logits; DeiT conversion."""

import contextlib
import io
import warnings

import pytest
import torch

from passt_lib.checkpoints import (
    convert_deit_state_dict,
    load_deit_into,
    load_pretrained,
    load_reference_checkpoint,
    strip_prefixes,
)
from passt_lib.model import PaSST, PaSSTConfig


@contextlib.contextmanager
def quiet():
    """The oracle prints shapes on its first call and warns on 998-frame input."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def reference_model(stride, *, fdim=128, tdim=998, dim=192, depth=2, heads=3, **patchout):
    from hear21passt.models.passt import PaSST as RefPaSST

    with quiet():
        return RefPaSST(img_size=(fdim, tdim), stride=stride, distilled=True, embed_dim=dim,
                        depth=depth, num_heads=heads, num_classes=10, **patchout)


def ref_logits(ref, mel):
    with quiet():
        return ref(mel)[0]


@pytest.mark.parametrize("stride,tdim", [
    (10, 306),
    (16, 306),
    pytest.param(10, 998, marks=pytest.mark.slow),
    pytest.param(16, 998, marks=pytest.mark.slow),
])
def test_reference_equivalence_eval(stride, tdim):
    torch.manual_seed(0)
    ref = reference_model(stride, tdim=tdim).eval()
    ours = load_reference_checkpoint(ref.state_dict(), fstride=stride, tstride=stride,
                                     input_tdim=tdim).eval()
    assert (ours.config.embed_dim, ours.config.depth, ours.config.num_heads) == (192, 2, 3)
    assert ours.n_classes == 10
    mel = torch.randn(2, 1, 128, tdim)
    with torch.no_grad():
        expected = ref_logits(ref, mel)
        got = ours(mel)
        assert (got - expected).abs().max() < 1e-4
        # Shorter input: both crop the time encoding at offset 0 in eval.
        short = mel[..., : tdim - 40]
        assert (ours(short) - ref_logits(ref, short)).abs().max() < 1e-4


def test_reference_equivalence_training_patchout():
    # With mode "batch" and the global RNG, our patchout draws what the reference draws.
    torch.manual_seed(0)
    ref = reference_model(10, tdim=306, s_patchout_t=7, s_patchout_f=3).train()
    ours = load_reference_checkpoint(ref.state_dict(), fstride=10, tstride=10, input_tdim=306,
                                     s_patchout_t=7, s_patchout_f=3).train()
    mel = torch.randn(2, 1, 128, 306)
    torch.manual_seed(123)
    expected = ref_logits(ref, mel)
    torch.manual_seed(123)
    got = ours(mel)
    assert (got - expected).abs().max() < 1e-4
    torch.manual_seed(124)
    assert (ours(mel) - expected).abs().max() > 1e-4  # other patches, other logits


def test_lightning_prefixes_and_errors(tmp_path):
    torch.manual_seed(0)
    ref = reference_model(16, tdim=306).eval()
    sd = ref.state_dict()
    other = {k: torch.zeros_like(v) for k, v in sd.items()}
    lightning = {"state_dict": {**{"net." + k: v for k, v in other.items()},
                                **{"net_swa." + k: v for k, v in sd.items()}}}
    path = tmp_path / "ref.ckpt"
    torch.save(lightning, path)
    ours = load_reference_checkpoint(path, fstride=16, tstride=16, input_tdim=306,
                                     prefer="net_swa").eval()
    mel = torch.randn(1, 128, 306)
    with torch.no_grad():
        assert (ours(mel) - ref_logits(ref, mel.unsqueeze(1))).abs().max() < 1e-4
    assert set(strip_prefixes({"net.a": 1, "mel.b": 2})) == {"a"}
    with pytest.raises(ValueError, match="prefer"):
        strip_prefixes(sd, prefer="teacher")
    broken = {k: v for k, v in sd.items() if not k.startswith("blocks.1.norm2")}
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['blocks.1.norm2.bias'.*extra.weight"):
        load_reference_checkpoint(broken, fstride=16, tstride=16, input_tdim=306)
    with pytest.raises(ValueError, match="8x19 patch grid but 128x998 .* gives 8x62"):
        load_reference_checkpoint(sd, fstride=16, tstride=16, input_tdim=998)
    with pytest.raises(FileNotFoundError):
        load_reference_checkpoint(tmp_path / "nope.ckpt", fstride=16, tstride=16, input_tdim=306)


@pytest.mark.slow
def test_waveform_through_both_frontends_and_models():
    from hear21passt.models.preprocess import AugmentMelSTFT

    from passt_lib.frontend import MelFrontend

    torch.manual_seed(0)
    ref_mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024,
                             freqm=48, timem=192, htk=False, fmin=0.0, fmax=None, norm=1,
                             fmin_aug_range=10, fmax_aug_range=2000).eval()
    ref = reference_model(10, tdim=998).eval()
    ours = load_reference_checkpoint(ref.state_dict(), fstride=10, tstride=10,
                                     input_tdim=998).eval()
    frontend = MelFrontend(ours.mel_config).eval()
    wave = 0.1 * torch.randn(2, 32000 * 10 - 640)  # 998 frames
    with torch.no_grad(), quiet():
        expected = ref(ref_mel(wave).unsqueeze(1))[0]
        mel = frontend(wave)
        assert mel.shape == (2, 128, 998)
        assert (ours(mel) - expected).abs().max() < 1e-4


@pytest.fixture(scope="module")
def deit_sd():
    import timm

    # Same layout as deit_base_distilled_patch16_384, 192 wide, a 14x14 grid.
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False).state_dict()


def test_deit_conversion_passt_and_ast(deit_sd):
    sd = deit_sd
    cfg = PaSSTConfig.preset("passt-s", size="tiny", input_fdim=64, input_tdim=100,
                             s_patchout_t=2, s_patchout_f=1)
    m = load_deit_into(PaSST(cfg), sd)
    f, t = cfg.grid
    w = sd["patch_embed.proj.weight"]
    assert torch.allclose(m.patch_embed.proj.weight, w.sum(1, keepdim=True))
    assert torch.equal(m.blocks[11].mlp.fc2.weight, sd["blocks.11.mlp.fc2.weight"])
    assert torch.equal(m.new_pos_embed, sd["pos_embed"][:, :2])
    grid = sd["pos_embed"][:, 2:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)  # (1, D, 14, 14)
    resized = torch.nn.functional.interpolate(grid, size=(f, t), mode="bicubic",
                                              align_corners=False)
    assert torch.allclose(m.freq_new_pos_embed, resized.mean(3, keepdim=True), atol=1e-6)
    assert torch.allclose(m.time_new_pos_embed, resized.mean(2, keepdim=True), atol=1e-6)
    # Same position grid: the converted tiny DeiT is the image model on a 1-channel image.
    assert m(torch.randn(1, 64, 100)).shape == (1, 527)

    ast = load_deit_into(PaSST(PaSSTConfig.preset("ast", size="tiny", input_fdim=64,
                                                  input_tdim=100)), sd)
    assert torch.allclose(ast.pos_embed.view(1, f, t, 192).permute(0, 3, 1, 2), resized,
                          atol=1e-6)

    # PaSST-L keeps blocks (0, 1, 3, 5, 7, 9, 11), renumbered.
    light = convert_deit_state_dict(sd, PaSSTConfig.preset("passt-s-l", size="tiny"))
    assert torch.equal(light["blocks.2.attn.qkv.weight"], sd["blocks.3.attn.qkv.weight"])
    assert "blocks.7.norm1.weight" not in light and "head.weight" not in light


def test_deit_conversion_errors(deit_sd):
    sd = dict(deit_sd)
    with pytest.raises(ValueError, match="width 192 does not match .* 768"):
        convert_deit_state_dict(sd, PaSSTConfig())
    sd["blocks.0.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected keys \['blocks.0.extra'\]"):
        load_deit_into(PaSST(PaSSTConfig.preset("passt-b", size="tiny", input_fdim=64,
                                                input_tdim=100)), sd)
    with pytest.raises(ValueError, match="unknown pretrained"):
        load_pretrained(PaSST(PaSSTConfig(embed_dim=192, num_heads=3, depth=1)), "audioset")


def test_imagenet_offline_error(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    model = PaSST(PaSSTConfig(depth=1))
    with pytest.raises(RuntimeError, match="could not download .*no network"):
        load_pretrained(model, "imagenet")


# Every released architecture, at reduced width and depth (the grid and encoding logic does
# not depend on them), and the most used one at full size.
@pytest.mark.parametrize("arch", [
    *[a for a in __import__("passt_lib.released", fromlist=["RELEASED"]).RELEASED
      if a != "passt_s_swa_p16_128_ap476"],
    pytest.param("passt_s_swa_p16_128_ap476", marks=pytest.mark.slow, id="full-size-ap476"),
])
def test_every_released_architecture_loads_and_runs_as_the_reference(arch):
    from passt_lib.released import released

    a = released(arch)
    full = arch == "passt_s_swa_p16_128_ap476"
    dim, depth, heads = (768, 12, 12) if full else (64, 2, 1)
    torch.manual_seed(0)
    with quiet():
        from hear21passt.models.passt import PaSST as RefPaSST

        ref = RefPaSST(img_size=(a.input_fdim, a.input_tdim), stride=(a.fstride, a.tstride),
                       distilled=True, embed_dim=dim, depth=depth, num_heads=heads,
                       num_classes=a.n_classes).eval()
    ours = load_reference_checkpoint(ref.state_dict(), arch, num_heads=heads).eval()
    assert ours.n_classes == a.n_classes
    assert ours.time_new_pos_embed.shape[3] == a.input_tdim // a.tstride  # as the reference
    for frames in (a.input_tdim, a.input_tdim * 2 // 3):  # its training length, and shorter
        mel = torch.randn(1 if full else 2, 1, a.input_fdim, frames)
        with torch.no_grad():
            diff = (ours(mel) - ref_logits(ref, mel)).abs().max().item()
        assert diff < 1e-4, (arch, frames, diff)


def test_released_names_replace_strides_and_unknown_names_list_the_known():
    torch.manual_seed(0)
    ref = reference_model(12, tdim=998, dim=64, heads=1)
    sd = ref.state_dict()
    with pytest.raises(ValueError, match=r"10x83 patch grid but 128x998 at stride \(16, 16\)"):
        load_reference_checkpoint(sd, fstride=16, tstride=16, input_tdim=998)
    m = load_reference_checkpoint(sd, "passt_s_p16_s12_128_ap470", num_heads=1)
    assert m.config.grid == (10, 82) and m.config.time_positions == 83
    with pytest.raises(ValueError, match="unknown released PaSST architecture 'passt-s'.*"
                                         "passt_s_swa_p16_128_ap476"):
        load_reference_checkpoint(sd, "passt-s")
    with pytest.raises(ValueError, match="give arch= a released architecture name"):
        load_reference_checkpoint(sd)
