"""Frozen text encoder: offline loading, clear errors, embedding cache, CFG with the empty prompt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from medidiff.conditioning.config import ConditioningConfig, TextConfig
from medidiff.conditioning.text import (
    TextConditioner,
    TextEncoder,
    TextEncoderError,
    net_config_for_text,
    read_prompts_file,
    text_condition,
)
from medidiff.config import ConfigError, from_dict, load_config
from medidiff.errors import MedidiffError
from medidiff.nets import build_net
from medidiff.nets.config import NetConfig
from medidiff.objectives import build_objective
from medidiff.objectives.config import ObjectiveConfig
from medidiff.samplers import sample
from medidiff.samplers.config import SamplerConfig
from medidiff.samplers.guidance import drop_conditions

from .tiny_clip import write_tiny_bert, write_tiny_clip

LEFT, RIGHT = "tumour in the left hemisphere", "tumour in the right hemisphere"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "enc", seed=0)


def test_tiny_clip_loads_offline_and_encodes(clip_dir):
    enc = TextEncoder.from_pretrained(clip_dir, max_length=16)
    assert enc.kind == "clip" and enc.hidden_size == 32
    assert not any(p.requires_grad for p in enc.model.parameters()) and not enc.model.training
    e = enc.encode([LEFT, RIGHT, ""])
    assert e.tokens.shape == (3, 16, 32) and e.pooled.shape == (3, 32) and e.mask.shape == (3, 16)
    assert e.mask.dtype == torch.bool and e.tokens.dtype == torch.float32
    # start + 5 words + end for the prompts, start + end for the empty prompt; the rest is padding
    assert e.mask.sum(1).tolist() == [7, 7, 2]
    assert e.mask[:, 0].all() and not e.mask[2, 2:].any()
    assert not torch.allclose(e.tokens[0], e.tokens[1]) and not torch.allclose(e.pooled[0], e.pooled[1])
    # deterministic: a fresh instance (memory cache empty) gives the same numbers
    again = TextEncoder.from_pretrained(clip_dir, max_length=16).encode([RIGHT])
    torch.testing.assert_close(again.tokens[0], e.tokens[1])
    cond = e.as_cond()
    assert set(cond) == {"context", "context_mask"} and cond["context"] is e.tokens


def test_loading_and_encoding_never_touch_the_network(clip_dir, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    enc = TextEncoder.from_pretrained(clip_dir, max_length=16)
    assert enc.encode([LEFT]).tokens.shape == (1, 16, 32)


def test_encoder_only_model_loads_with_masked_mean_pooling(tmp_path):
    enc = TextEncoder.from_pretrained(write_tiny_bert(tmp_path / "bert"), max_length=12)
    assert enc.kind == "encoder"
    e = enc.encode([LEFT])
    m = e.mask[0]
    assert m.sum() == 7  # [CLS] + 5 words + [SEP]
    torch.testing.assert_close(e.pooled[0], e.tokens[0][m].mean(0))


def test_missing_folder_error_names_path_and_contents(tmp_path):
    with pytest.raises(TextEncoderError) as err:
        TextEncoder.from_pretrained(tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "does not exist" in msg
    for needed in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "never downloads"):
        assert needed in msg


@pytest.mark.parametrize("remove,reported", [
    (["model.safetensors"], "weights (model.safetensors or pytorch_model.bin)"),
    (["config.json"], "config.json"),
    (["tokenizer.json", "vocab.json"], "tokenizer files"),
])
def test_incomplete_folder_error_lists_what_is_missing(clip_dir, tmp_path, remove, reported):
    broken = shutil.copytree(clip_dir, tmp_path / "broken")
    for name in remove:
        (broken / name).unlink()
    with pytest.raises(MedidiffError) as err:
        TextEncoder.from_pretrained(broken)
    msg = str(err.value)
    assert str(broken) in msg and f"missing {reported}" in msg and "save_pretrained" in msg


def test_max_length_beyond_the_encoder_is_refused(clip_dir):
    with pytest.raises(TextEncoderError, match="exceeds the encoder's 32 positions"):
        TextEncoder.from_pretrained(clip_dir, max_length=64)


def test_cache_hits_in_memory_and_on_disk_across_instances(clip_dir, tmp_path):
    cache = tmp_path / "cache"
    enc = TextEncoder.from_pretrained(clip_dir, max_length=16, cache_dir=cache)
    first = enc.encode([LEFT, RIGHT, LEFT])
    assert (enc.stats.misses, enc.stats.hits) == (2, 0)  # the repeat inside one call is encoded once
    enc.encode([LEFT])
    assert (enc.stats.misses, enc.stats.memory_hits, enc.stats.disk_hits) == (2, 1, 0)
    files = sorted((cache / enc.encoder_hash).glob("*.safetensors"))
    assert len(files) == 2 and (cache / enc.encoder_hash / "encoder.json").is_file()

    other = TextEncoder.from_pretrained(clip_dir, max_length=16, cache_dir=cache)
    assert other.encoder_hash == enc.encoder_hash
    # the model must not run: break it, so a miss would raise
    other.model.forward = None  # type: ignore[assignment]
    reused = other.encode([RIGHT, LEFT])
    assert (other.stats.misses, other.stats.disk_hits) == (0, 2)
    torch.testing.assert_close(reused.tokens, first.tokens[[1, 0]])
    torch.testing.assert_close(reused.pooled, first.pooled[[1, 0]])
    assert torch.equal(reused.mask, first.mask[[1, 0]])


def test_cache_is_invalidated_when_the_encoder_changes(clip_dir, tmp_path):
    cache = tmp_path / "cache"
    a = TextEncoder.from_pretrained(clip_dir, max_length=16, cache_dir=cache)
    ea = a.encode([LEFT])
    changed = write_tiny_clip(tmp_path / "changed", seed=1)  # same config and tokenizer, new weights
    b = TextEncoder.from_pretrained(changed, max_length=16, cache_dir=cache)
    assert b.encoder_hash != a.encoder_hash
    eb = b.encode([LEFT])
    assert b.stats.misses == 1 and b.stats.disk_hits == 0
    assert not torch.allclose(ea.tokens, eb.tokens)
    # another max_length is another embedding shape: another key too
    c = TextEncoder.from_pretrained(clip_dir, max_length=12, cache_dir=cache)
    assert c.encoder_hash != a.encoder_hash and c.encode([LEFT]).tokens.shape == (1, 12, 32)


def test_null_embedding_is_the_empty_prompt_and_fits_guidance(clip_dir):
    enc = TextEncoder.from_pretrained(clip_dir, max_length=16)
    null = enc.null_embedding(3)
    assert null.tokens.shape == (3, 16, 32) and null.mask.sum(1).tolist() == [2, 2, 2]
    torch.testing.assert_close(null.tokens[0], enc.encode([""]).tokens[0])
    cond = text_condition([LEFT, RIGHT], enc)
    dropped = drop_conditions(cond, torch.tensor([True, False]), enc.null_cond())
    torch.testing.assert_close(dropped["context"][0], null.tokens[0])
    assert torch.equal(dropped["context_mask"][0], null.mask[0])
    torch.testing.assert_close(dropped["context"][1], cond["context"][1])


def test_conditioner_maps_case_ids_and_names_missing_ones(clip_dir):
    enc = TextEncoder.from_pretrained(clip_dir, max_length=16)
    cond_of = TextConditioner(enc, {"a": LEFT, "b": RIGHT})
    cond_of.warm()
    assert enc.stats.misses == 3  # both prompts and the empty one
    cond = cond_of(["b", "a", "b"])
    assert enc.stats.misses == 3 and cond["context"].shape == (3, 16, 32)
    torch.testing.assert_close(cond["context"][0], cond["context"][2])
    with pytest.raises(MedidiffError, match=r"no prompt for case\(s\) \['zz'\]"):
        cond_of(["a", "zz"])


def test_conditioner_on_a_device_reads_its_table_and_gives_the_same_values(clip_dir, monkeypatch):
    """Asked for a device, the conditioner moves every prompt there once; a step only stacks
    (no encoder call, no copy from host memory). Above the size limit it reads the host cache."""
    from medidiff.conditioning import text as text_mod

    enc = TextEncoder.from_pretrained(clip_dir, max_length=16)
    host = TextConditioner(enc, {"a": LEFT, "b": RIGHT})
    want, want_null = host(["b", "a", "b"]), host.null_cond()
    on_device = TextConditioner(enc, {"a": LEFT, "b": RIGHT})
    first = on_device(["b", "a", "b"], device="cpu")
    calls = []
    monkeypatch.setattr(enc, "encode", lambda prompts: calls.append(prompts))  # a step must not encode
    again, null = on_device(["b", "a", "b"], device="cpu"), on_device.null_cond("cpu")
    assert calls == []
    for got in (first, again):
        assert torch.equal(got["context"], want["context"]) and torch.equal(got["context_mask"], want["context_mask"])
    assert torch.equal(null["context"], want_null["context"]) and torch.equal(null["context_mask"], want_null["context_mask"])
    monkeypatch.undo()
    monkeypatch.setattr(text_mod, "DEVICE_TABLE_LIMIT", 1)  # too large: the host path, same values
    small = TextConditioner(enc, {"a": LEFT, "b": RIGHT})
    got = small(["b", "a", "b"], device="cpu")
    assert small._tables == {torch.device("cpu"): None}
    assert torch.equal(got["context"], want["context"]) and torch.equal(small.null_cond("cpu")["context"], want_null["context"])


def _text_net(enc: TextEncoder):
    cfg = net_config_for_text(NetConfig(
        in_channels=1, out_channels=1, channels=(8, 16), num_res_blocks=1, attention_levels=(False, True),
        head_dim=8, norm_groups=4, zero_init=False, channels_last=False,
    ), enc)
    torch.manual_seed(0)
    return build_net(cfg).eval()


def test_guidance_scale_and_prompt_change_samples(clip_dir):
    enc = TextEncoder.from_pretrained(clip_dir, max_length=16)
    net = _text_net(enc)
    objective = build_objective(ObjectiveConfig(type="flow"))
    cond = text_condition([LEFT, RIGHT], enc)

    def draw(scale: float, c=cond) -> torch.Tensor:
        with torch.no_grad():
            return sample(objective, net, (2, 1, 8, 8, 8), config=SamplerConfig(
                name="euler", num_steps=4, guidance_scale=scale), seeds=[0, 1], cond=c, null_cond=enc.null_cond())

    s1, s1b, s3 = draw(1.0), draw(1.0), draw(3.0)
    torch.testing.assert_close(s1, s1b)  # deterministic per seed
    assert (s1 - s3).abs().max() > 1e-3  # guidance changes the samples
    swapped = draw(1.0, {k: v.flip(0) for k, v in cond.items()})
    assert (swapped - s1).abs().max() > 1e-3  # the prompt changes the samples
    # scale 0 is the unconditional model: both prompts give what the empty prompt gives
    null_cond = {k: v.expand(2, *v.shape) for k, v in enc.null_cond().items()}
    torch.testing.assert_close(draw(0.0), draw(1.0, null_cond), atol=1e-5, rtol=1e-5)


def test_net_config_for_text_sets_and_checks_cross_attention_dim(clip_dir):
    enc = TextEncoder.from_pretrained(clip_dir, max_length=16)
    base = NetConfig(channels=(8, 16), attention_levels=(False, True), head_dim=8, norm_groups=4)
    assert net_config_for_text(base, enc).cross_attention_dim == 32
    with pytest.raises(MedidiffError, match="cross_attention_dim is 64 .* hidden size 32"):
        net_config_for_text(NetConfig(channels=(8, 16), attention_levels=(False, True), head_dim=8,
                                      norm_groups=4, cross_attention_dim=64), enc)
    with pytest.raises(MedidiffError, match="needs attention blocks"):
        net_config_for_text(NetConfig(channels=(8, 16), norm_groups=4), enc)


def test_read_prompts_file(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# one per line\ntumour in the left hemisphere\n\ntumour in the right hemisphere\n")
    assert read_prompts_file(f) == [LEFT, RIGHT]
    assert read_prompts_file(f, 2) == [LEFT, RIGHT]
    with pytest.raises(MedidiffError, match="2 prompts for 3 samples"):
        read_prompts_file(f, 3)
    (tmp_path / "one.txt").write_text(LEFT + "\n")
    assert read_prompts_file(tmp_path / "one.txt", 3) == [LEFT] * 3


def test_text_config_section_validates():
    cfg = from_dict(ConditioningConfig, {"text": {"encoder": "models/clip", "max_length": 77,
                                                  "facts": ["location", "volumes"]}})
    assert cfg.text.enabled and cfg.text.max_length == 77 and not ConditioningConfig().text.enabled
    with pytest.raises(ConfigError):
        from_dict(ConditioningConfig, {"text": {"facts": ["location", "grade"]}})
    with pytest.raises((ConfigError, ValueError)):
        from_dict(TextConfig, {"max_length": 1})


def test_shipped_text_config_loads():
    cfg = load_config(REPO / "configs" / "text_flow.yaml")
    assert cfg.conditioning.text.enabled and cfg.net.cross_attention_dim is not None
    assert cfg.objective.cond_drop_prob > 0 and cfg.sampler.guidance_scale > 1


def test_text_encoders_never_run_a_folders_own_code(clip_dir, tmp_path, monkeypatch):
    """trust_remote_code=False is passed explicitly (transformers' default has changed before)."""
    import transformers

    from medidiff.conditioning.text import TextEncoder

    calls = []
    for cls in (transformers.AutoTokenizer, transformers.CLIPTextModel, transformers.AutoModel):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            calls.append(kwargs.get("trust_remote_code"))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    TextEncoder.from_pretrained(clip_dir)
    TextEncoder.from_pretrained(write_tiny_bert(tmp_path / "bert"))
    assert calls and all(c is False for c in calls), calls
