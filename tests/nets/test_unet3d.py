"""Invariants of the denoisers (tiny CPU cases: 16^3 volumes, widths 8-16)."""

from __future__ import annotations

import copy

import pytest
import torch

from medidiff.config import ConfigError, from_dict, to_dict
from medidiff.nets import NETS, MonaiUNet, NetConfig, UNet3D, build_net, count_parameters

S = 16


def tiny(**kw) -> NetConfig:
    base = dict(
        in_channels=2, out_channels=2, channels=(8, 16, 16), norm_groups=4, head_dim=4,
        attention_levels=(False, False, False), mid_attention=False, num_res_blocks=1,
    )
    base.update(kw)
    return NetConfig(**base)


def inputs(cfg: NetConfig, b: int = 2, s: int = S) -> tuple[torch.Tensor, torch.Tensor, dict]:
    x = torch.randn(b, cfg.in_channels, s, s, s)
    t = torch.rand(b)
    kw: dict = {}
    if cfg.cond_channels:
        kw["cond_image"] = torch.randn(b, cfg.cond_channels, s, s, s)
    if cfg.num_classes:
        kw["class_labels"] = torch.arange(b) % (cfg.num_classes + 1)  # includes the null index
    if cfg.num_scalars:
        kw["scalars"] = torch.randn(b, cfg.num_scalars)
    if cfg.cross_attention_dim:
        kw["context"] = torch.randn(b, 5, cfg.cross_attention_dim)
        kw["context_mask"] = torch.tensor([[True, True, True, False, False]] * b)
    return x, t, kw


def perturb_output(net: torch.nn.Module) -> None:
    """Un-zero the zero-initialised convs so the output depends on the input."""
    torch.manual_seed(1)
    for name, p in net.named_parameters():
        if p.abs().sum() == 0 and p.ndim > 1:
            p.data.normal_(0, 0.05)


FULL = dict(
    attention_levels=(False, True, True), mid_attention=True, cross_attention_dim=6, num_classes=3,
    num_scalars=2, cond_channels=1,
)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"attention_levels": (False, True, True), "mid_attention": True},
        {"attention_levels": (False, False, True), "cross_attention_dim": 6},
        {"num_classes": 3},
        {"num_scalars": 2},
        {"cond_channels": 3},
        {"skip": "add"},
        {"resample": "conv"},
        {"stem_patch": 2},
        {"num_res_blocks": (1, 2, 1), "use_scale_shift_norm": False},
        {"spatial_dims": 2},
        {"norm": "pixel", "channels": (8, 10, 14), "skip": "add"},
        FULL,
    ],
)
def test_output_shape_equals_input_shape(kw):
    cfg = tiny(out_channels=3, **kw)
    net = build_net(cfg)
    x, t, cond = inputs(cfg)
    if cfg.spatial_dims == 2:
        x = x[:, :, 0]
    y = net(x, t, **cond)
    assert y.shape == (x.shape[0], 3, *x.shape[2:])
    assert torch.isfinite(y).all()


def test_zero_init_output_is_zero_and_time_changes_output():
    cfg = tiny(**FULL)
    net = build_net(cfg)
    x, t, cond = inputs(cfg)
    assert net(x, t, **cond).abs().max() == 0
    perturb_output(net)
    y0 = net(x, torch.zeros(2), **cond)
    y1 = net(x, torch.full((2,), 0.5), **cond)
    assert (y0 - y1).abs().max() > 1e-4


def test_time_scale_maps_flow_time_to_ddpm_steps():
    """t in [0, 1] with time_scale 1000 equals DDPM step t*1000 with time_scale 1."""
    a = build_net(tiny(time_scale=1000.0, zero_init=False))
    b = build_net(tiny(time_scale=1.0, zero_init=False))
    b.load_state_dict(a.state_dict())
    x, _, _ = inputs(a.cfg)
    t = torch.tensor([0.25, 0.9])
    torch.testing.assert_close(a(x, t), b(x, t * 1000), rtol=1e-5, atol=1e-5)


def test_class_null_index_and_default():
    cfg = tiny(num_classes=3, zero_init=False)
    net = build_net(cfg)
    x, t, _ = inputs(cfg)
    null = torch.full((2,), 3)
    y_null = net(x, t, class_labels=null)
    torch.testing.assert_close(net(x, t), y_null)  # None means "dropped"
    assert (net(x, t, class_labels=torch.zeros(2, dtype=torch.long)) - y_null).abs().max() > 1e-5
    with pytest.raises(IndexError):
        net(x, t, class_labels=torch.full((2,), 4))


def test_scalar_mask_equals_nan():
    cfg = tiny(num_scalars=2, zero_init=False)
    net = build_net(cfg)
    x, t, _ = inputs(cfg)
    s = torch.randn(2, 2)
    masked = net(x, t, scalars=s, scalars_mask=torch.tensor([[True, False], [True, False]]))
    nan = net(x, t, scalars=torch.stack([s[:, 0], torch.full((2,), float("nan"))], 1))
    torch.testing.assert_close(masked, nan)
    torch.testing.assert_close(net(x, t), net(x, t, scalars=s, scalars_mask=torch.tensor([False, False])))


def test_every_parameter_gets_a_gradient():
    cfg = tiny(**FULL, num_res_blocks=(1, 2, 1), dropout=0.1)
    net = build_net(cfg)
    perturb_output(net)
    x, t, cond = inputs(cfg, b=4)
    net(x, t, **cond).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_pixel_norm_is_per_voxel_scale_invariant_and_trainable():
    from medidiff.nets.unet3d import PixelNorm

    norm = PixelNorm(6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 6, 8, 9, 10)
    y = norm(x)
    # local: a crop of the output is the output of the crop (no per-patch statistics in patch-wise SR)
    torch.testing.assert_close(norm(x[..., 2:6, 3:7, 1:5]), y[..., 2:6, 3:7, 1:5])
    # each voxel's channels are RMS-normalised before the affine
    z = (y - norm.bias[:, None, None, None]) / norm.weight[:, None, None, None]
    torch.testing.assert_close(z.square().mean(1), torch.ones(2, 8, 9, 10), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm(3.0 * x), y, rtol=1e-4, atol=1e-5)
    assert norm(x.to(torch.bfloat16)).dtype == torch.bfloat16
    cfg = tiny(norm="pixel", channels=(8, 10, 14), num_res_blocks=(1, 2, 1))
    net = build_net(cfg)
    perturb_output(net)
    x, t, cond = inputs(cfg, b=2)
    net(x, t, **cond).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("kw", [FULL, {"skip": "add", "stem_patch": 2}])
def test_checkpointing_matches_plain(kw):
    cfg = tiny(**kw)
    net = build_net(cfg)
    perturb_output(net)
    ck = copy.deepcopy(net)
    ck.checkpointing = True
    x, t, cond = inputs(cfg)
    y0, y1 = net(x, t, **cond), ck(x, t, **cond)
    torch.testing.assert_close(y0, y1)
    y0.square().sum().backward()
    y1.square().sum().backward()
    for (n, p0), p1 in zip(net.named_parameters(), ck.parameters()):
        torch.testing.assert_close(p0.grad, p1.grad, msg=n)


def test_channels_last_matches_contiguous():
    a = build_net(tiny(**FULL, channels_last=True))
    perturb_output(a)
    b = build_net(tiny(**FULL, channels_last=False))
    b.load_state_dict(a.state_dict())
    assert a.stem.weight.is_contiguous(memory_format=torch.channels_last_3d)
    x, t, cond = inputs(a.cfg)
    torch.testing.assert_close(a(x, t, **cond), b(x, t, **cond), rtol=1e-4, atol=1e-5)


def test_masked_context_tokens_do_not_matter():
    cfg = tiny(attention_levels=(False, True, True), mid_attention=True, cross_attention_dim=6)
    net = build_net(cfg)
    perturb_output(net)
    x, t, cond = inputs(cfg)
    y = net(x, t, **cond)
    ctx = cond["context"].clone()
    ctx[:, 3:] = torch.randn_like(ctx[:, 3:]) * 10  # only masked tokens change
    torch.testing.assert_close(net(x, t, context=ctx, context_mask=cond["context_mask"]), y)
    # kept tokens do matter
    ctx[:, 0] += 1
    assert (net(x, t, context=ctx, context_mask=cond["context_mask"]) - y).abs().max() > 1e-5
    # a fully dropped context is finite and equals no cross-attention at all
    none = torch.zeros(2, 5, dtype=torch.bool)
    y_drop = net(x, t, context=ctx, context_mask=none)
    assert torch.isfinite(y_drop).all()
    torch.testing.assert_close(y_drop, net(x, t))


def test_batch_items_are_independent():
    cfg = tiny(**FULL)
    net = build_net(cfg).eval()
    perturb_output(net)
    x, t, cond = inputs(cfg, b=2)
    y = net(x, t, **cond)
    one = {k: v[:1] for k, v in cond.items()}
    torch.testing.assert_close(net(x[:1], t[:1], **one), y[:1], rtol=1e-4, atol=1e-5)


MONAI = dict(type="monai", resample="conv", mid_attention=True, use_scale_shift_norm=False)


def test_monai_adapter_same_signature():
    cfg = tiny(**MONAI, attention_levels=(False, False, True), cross_attention_dim=6,
               num_classes=3, num_scalars=2, cond_channels=1)
    net = build_net(cfg)
    assert isinstance(net, MonaiUNet)
    x, t, cond = inputs(cfg)
    cond["context_mask"] = torch.tensor([[True] * 5, [False] * 5])
    y = net(x, t, **cond)
    assert y.shape == x.shape
    y.sum().backward()
    assert net.scalar_embed.mlp[0].weight.grad is not None


def test_monai_padded_prompts_attend_to_their_tokens_only():
    """Prompts are padded to max_length: the padding must not change the output (it used to raise
    at the first step), kept tokens must, and a fully dropped prompt gives no cross-attention."""
    cfg = tiny(**MONAI, attention_levels=(False, True, True), cross_attention_dim=6, channels_last=False)
    net = build_net(cfg).eval()
    perturb_output(net)
    x, t, cond = inputs(cfg)  # 3 real tokens, 2 padding
    y = net(x, t, **cond)
    assert torch.isfinite(y).all()
    # padding values do not matter, and padding equals a context of the real tokens alone
    ctx = cond["context"].clone()
    ctx[:, 3:] = torch.randn_like(ctx[:, 3:]) * 10
    torch.testing.assert_close(net(x, t, context=ctx, context_mask=cond["context_mask"]), y)
    torch.testing.assert_close(net(x, t, context=ctx[:, :3]), y, rtol=1e-4, atol=1e-5)
    ctx[:, 0] += 1
    assert (net(x, t, context=ctx, context_mask=cond["context_mask"]) - y).abs().max() > 1e-5
    # per sample: masks of different lengths in one batch equal each sample alone
    mask = torch.tensor([[True, True, True, False, False], [True, False, False, False, False]])
    both = net(x, t, context=cond["context"], context_mask=mask)
    for i, n in enumerate([3, 1]):
        torch.testing.assert_close(both[i:i + 1], net(x[i:i + 1], t[i:i + 1], context=cond["context"][i:i + 1, :n]),
                                   rtol=1e-4, atol=1e-5)
    # fully dropped: the cross-attention updates are zero, whatever the context holds
    none = torch.zeros(2, 5, dtype=torch.bool)
    y_drop = net(x, t, context=cond["context"], context_mask=none)
    torch.testing.assert_close(net(x, t, context=ctx * 100, context_mask=none), y_drop)
    # the masking is a forward only: the attention weights are MONAI's own
    from monai.networks.nets import DiffusionModelUNet

    plain = DiffusionModelUNet(
        spatial_dims=3, in_channels=2, out_channels=2, num_res_blocks=(1, 1, 1), channels=(8, 16, 16),
        attention_levels=(False, True, True), norm_num_groups=4, num_head_channels=4, with_conditioning=True,
        cross_attention_dim=6)
    attn = {k: v.shape for k, v in plain.state_dict().items() if "attn" in k}
    assert attn and attn == {k: v.shape for k, v in net.unet.state_dict().items() if "attn" in k}


@pytest.mark.parametrize(
    "option, value, fix",
    [("mid_attention", False, "mid_attention: true"), ("use_scale_shift_norm", True, "use_scale_shift_norm: false"),
     ("dropout", 0.1, "dropout: 0"), ("zero_init", False, "zero_init: true"),
     ("checkpointing", True, "checkpointing: false")],
)
def test_monai_refuses_options_it_cannot_build_by_name(option, value, fix):
    with pytest.raises(ValueError, match=rf"does not support {option}={value!r}: set {fix}, or use type: unet3d"):
        tiny(**{**MONAI, option: value})


def test_registry_and_parameter_count():
    assert set(NETS) == {"unet3d", "monai"}
    net = build_net(tiny())
    assert isinstance(net, UNet3D)
    assert count_parameters(net) == sum(p.numel() for p in net.parameters())
    net.stem.weight.requires_grad_(False)
    assert count_parameters(net) == sum(p.numel() for p in net.parameters()) - net.stem.weight.numel()
    assert count_parameters(net, trainable_only=False) == sum(p.numel() for p in net.parameters())


def test_input_size_error_teaches():
    net = build_net(tiny(stem_patch=2))
    with pytest.raises(ValueError, match=r"pad to \(16, 16, 16\)"):
        net(torch.randn(1, 2, 12, 16, 16), torch.rand(1))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"channels": (8, 16, 10)}, "not divisible by norm_groups"),
        ({"attention_levels": (True,)}, "attention_levels has 1 entries"),
        ({"num_res_blocks": (1, 1)}, "num_res_blocks has 2 entries"),
        ({"cross_attention_dim": 4}, "no attention_levels"),
        ({"stem_patch": 3}, "stem_patch must be 1, 2 or 4"),
        ({"time_scale": 0.0}, "time_scale"),
        ({"type": "monai", "skip": "add"}, "does not support"),
        ({**MONAI, "norm": "pixel"}, "norm='pixel'"),
        ({"channels": (8, 16, 20), "norm_groups": 4, "head_dim": 8, "attention_levels": (False, False, True)},
         "not divisible by head_dim"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_config_round_trip_and_strict_loading():
    cfg = tiny(**FULL)
    again = from_dict(NetConfig, to_dict(cfg))
    assert again == cfg
    with pytest.raises(ConfigError, match="did you mean"):
        from_dict(NetConfig, {"chanels": [8, 16]})
    with pytest.raises(ConfigError, match="norm_groups"):
        from_dict(NetConfig, {"channels": [8, 12]})  # default norm_groups 32
