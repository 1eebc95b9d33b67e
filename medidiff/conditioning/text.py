"""A frozen text encoder for prompt conditioning (the CLIP path of 2D text-to-image models, in 3D).

Prompts become token embeddings that the denoiser reads by cross-attention (Stable Diffusion,
arXiv:2112.10752 sec. 3.3; GenerateCT and MAISI condition 3D medical volumes the same way):

    prompts --tokenizer--> ids (B, L) --frozen encoder--> tokens (B, L, D), pooled (B, D), mask (B, L)
    net(x, t, context=tokens, context_mask=mask)            # net.cross_attention_dim == D

Loading is offline by construction. :meth:`TextEncoder.from_pretrained` takes a LOCAL folder
(``save_pretrained`` output) and calls transformers with ``local_files_only=True``: a missing
or incomplete folder is a :class:`~medidiff.errors.MedidiffError` that names the folder and
lists what it must hold, never a download. Supported:

* CLIP text towers (``model_type`` ``clip_text_model``, or a full ``clip`` checkpoint of which
  the text half is loaded): ``CLIPTextModel`` + the folder's CLIP tokenizer. ``pooled`` is CLIP's
  end-of-text token state (its ``pooler_output``).
* any encoder-only text model (BERT-style biomedical towers: PubMedBERT, BioBERT, CXR-BERT...):
  ``AutoModel`` + ``AutoTokenizer``. ``pooled`` is the mean of the valid token states (BERT's
  ``pooler_output`` was trained for next-sentence prediction, a poor sentence summary).
Encoder-decoder models (T5) are refused: save their encoder alone (``T5EncoderModel``).

Every prompt is padded to ``max_length`` tokens, so contexts of any batch have one shape
(B, L, D) and the empty-prompt embedding can stand in for any sample (classifier-free guidance,
arXiv:2207.12598). Padding tokens are masked out (``mask`` False), the convention of
:mod:`medidiff.samplers.guidance` and the UNet's cross-attention.

The encoder is frozen (``requires_grad`` False, ``eval()``, encodes under ``no_grad``) and is not
an ``nn.Module`` attribute of anything trained: it stays outside the DeepSpeed engine (DESIGN:
frozen parts stay outside), like the latent codec.

Cache. Embeddings are cached per unique prompt in memory and, with ``cache_dir``, on disk as
``<cache_dir>/<encoder_hash>/<prompt_hash>.safetensors`` (tokens, pooled, mask; the prompt in the
file's metadata). ``encoder_hash`` covers config.json, every weights file, the tokenizer files,
``max_length`` and the pooling rule, so a changed encoder never reads stale embeddings: it
writes to a new folder. ``stats`` counts memory hits, disk hits and misses (encoder calls).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from medidiff.errors import MedidiffError
from medidiff.files import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "WEIGHT_FILES",
    "TOKENIZER_FILES",
    "TextEncoderError",
    "TextEmbedding",
    "CacheStats",
    "TextEncoder",
    "check_encoder_dir",
    "text_condition",
    "TextConditioner",
    "net_config_for_text",
    "read_prompts_file",
]

# Weights as save_pretrained writes them (single file or sharded with an index).
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)
# Any one of these tokenizer file sets is enough.
TOKENIZER_FILES: tuple[tuple[str, ...], ...] = (
    ("tokenizer.json",),  # fast tokenizers (every save_pretrained since transformers 4)
    ("vocab.json", "merges.txt"),  # CLIP/GPT-2 byte-level BPE
    ("vocab.txt",),  # BERT WordPiece
    ("spiece.model",),  # SentencePiece
)
REQUIREMENTS = (
    "config.json, weights (model.safetensors or pytorch_model.bin, or a sharded *.index.json) and tokenizer "
    "files (tokenizer.json, or vocab.json + merges.txt, or vocab.txt, or spiece.model); write such a folder "
    "on a machine with the model: model.save_pretrained(DIR); tokenizer.save_pretrained(DIR)"
)
_POOLING_VERSION = "clip-eos|masked-mean:v1"  # part of the encoder hash: change it if pooling changes
_CLIP_TYPES = ("clip_text_model", "clip")


class TextEncoderError(MedidiffError, ValueError):
    """A text encoder folder that cannot be used; the message names it and what is missing."""


@dataclass(frozen=True)
class TextEmbedding:
    """Encoded prompts.

    tokens: (B, L, D) float32 token states (padded to L = max_length).
    pooled: (B, D) one vector per prompt.
    mask: (B, L) bool, True = a real token (attend), False = padding.
    """

    tokens: Tensor
    pooled: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def to(self, device: torch.device | str) -> TextEmbedding:
        return TextEmbedding(self.tokens.to(device), self.pooled.to(device), self.mask.to(device))

    def as_cond(self) -> dict[str, Tensor]:
        """``{"context": (B, L, D), "context_mask": (B, L)}``: the net's cross-attention inputs."""
        return {"context": self.tokens, "context_mask": self.mask}


@dataclass
class CacheStats:
    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0  # prompts the encoder actually ran on

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits


def check_encoder_dir(path: str | Path) -> Path:
    """``path`` as a Path if it holds a loadable encoder; else TextEncoderError listing what is missing."""
    path = Path(path).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise TextEncoderError(
            f"{path}: text encoder folder {what}. It must be a LOCAL folder holding {REQUIREMENTS} "
            "(medidiff never downloads weights)"
        )
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not any(all((path / f).is_file() for f in group) for group in TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json, or vocab.json + merges.txt, or vocab.txt, or spiece.model)")
    if missing:
        raise TextEncoderError(
            f"{path}: incomplete text encoder folder, missing {'; '.join(missing)}. It must hold {REQUIREMENTS}"
        )
    return path


def _hash_files(paths: Sequence[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(p.name.encode() + b"\0")
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _encoder_files(path: Path) -> list[Path]:
    """config, weights (incl. every shard) and tokenizer files, in a fixed order."""
    names = ["config.json", *WEIGHT_FILES, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "vocab.json", "merges.txt", "vocab.txt", "spiece.model"]
    files = [path / n for n in names if (path / n).is_file()]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():  # shards named by the index
            shards = sorted(set(json.loads((path / index).read_text()).get("weight_map", {}).values()))
            files += [path / s for s in shards if (path / s).is_file()]
    return files


def _prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:32]


class TextEncoder:
    """A frozen Hugging Face text encoder with a prompt-embedding cache.

    Build it with :meth:`from_pretrained`; :meth:`encode` prompts, :meth:`null_embedding` for the
    empty prompt, :meth:`null_cond` for classifier-free guidance.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        kind: Literal["clip", "encoder"],
        max_length: int,
        encoder_hash: str,
        path: str | Path = "<memory>",
        device: torch.device | str = "cpu",
        cache_dir: str | Path | None = None,
    ) -> None:
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.kind = kind
        self.max_length = int(max_length)
        self.encoder_hash = encoder_hash
        self.path = Path(path)
        self.device = torch.device(device)
        self.cache_dir = Path(cache_dir) / encoder_hash if cache_dir is not None else None
        self.stats = CacheStats()
        self._memory: dict[str, tuple[Tensor, Tensor, Tensor]] = {}  # prompt -> (L, D), (D,), (L,) on CPU

    # ---- loading ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        max_length: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> TextEncoder:
        """Load the encoder saved in the local folder ``path`` (never downloads).

        ``max_length`` defaults to the tokenizer's limit (77 for CLIP), capped by the model's
        position embeddings. ``cache_dir`` enables the on-disk embedding cache.
        """
        path = check_encoder_dir(path)
        try:
            config = json.loads((path / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TextEncoderError(f"{path / 'config.json'}: not valid JSON: {exc}") from exc
        model_type = str(config.get("model_type", ""))
        if config.get("is_encoder_decoder"):
            raise TextEncoderError(
                f"{path}: {model_type or 'this'} is an encoder-decoder model; save its text encoder alone "
                "(e.g. T5EncoderModel.save_pretrained(DIR)) and point conditioning.text.encoder at that folder"
            )
        # Offline twice over: every call is local_files_only on a folder checked above, and
        # HF_HUB_OFFLINE (unless the user set it) keeps huggingface_hub from any lookup, e.g. of a
        # tokenizer's remote chat template, when it is imported here first.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer, CLIPTextModel

        kind: Literal["clip", "encoder"] = "clip" if model_type in _CLIP_TYPES else "encoder"
        try:
            # trust_remote_code=False: a folder's own Python (auto_map in config.json) never runs;
            # pinned rather than left to transformers' default, which has changed between versions.
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            loader = CLIPTextModel if kind == "clip" else AutoModel
            model = loader.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise TextEncoderError(f"{path}: transformers could not load the text encoder: {exc}. "
                                   f"The folder must hold {REQUIREMENTS}") from exc
        model = model.float()
        limits = [int(getattr(model.config, "max_position_embeddings", 0) or 0)]
        tok_limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
        if 0 < tok_limit < 100_000:  # transformers uses a huge sentinel for "no limit"
            limits.append(tok_limit)
        limit = min(v for v in limits if v > 0) if any(v > 0 for v in limits) else 77
        if max_length is None:
            max_length = limit
        if max_length > limit:
            raise TextEncoderError(
                f"{path}: max_length {max_length} exceeds the encoder's {limit} positions; use max_length <= {limit}"
            )
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise TextEncoderError(f"{path}: the tokenizer has neither a pad nor an end token to pad prompts with")
            tokenizer.pad_token = tokenizer.eos_token
        encoder_hash = _hash_files(_encoder_files(path), f"{_POOLING_VERSION}|max_length={max_length}")
        return cls(model, tokenizer, kind=kind, max_length=max_length, encoder_hash=encoder_hash, path=path,
                   device=device, cache_dir=cache_dir)

    @property
    def hidden_size(self) -> int:
        """D: the width of the token states (set ``net.cross_attention_dim`` to it)."""
        return int(self.model.config.hidden_size)

    # ---- encoding -----------------------------------------------------------------------------

    @torch.no_grad()
    def _run(self, prompts: list[str]) -> list[tuple[Tensor, Tensor, Tensor]]:
        batch = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        ids = batch["input_ids"].to(self.device)  # (B, L)
        mask = batch["attention_mask"].to(self.device).bool()  # (B, L)
        out = self.model(input_ids=ids, attention_mask=mask.long())
        tokens = out.last_hidden_state.float()  # (B, L, D)
        if self.kind == "clip":
            pooled = out.pooler_output.float()  # (B, D) end-of-text token (CLIP's sentence summary)
        else:
            w = mask.to(tokens.dtype).unsqueeze(-1)  # (B, L, 1)
            pooled = (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, D) masked mean
        return [(tokens[i].cpu(), pooled[i].cpu(), mask[i].cpu()) for i in range(len(prompts))]

    def _disk_path(self, prompt: str) -> Path | None:
        return self.cache_dir / f"{_prompt_key(prompt)}.safetensors" if self.cache_dir is not None else None

    def _read_disk(self, prompt: str) -> tuple[Tensor, Tensor, Tensor] | None:
        path = self._disk_path(prompt)
        if path is None or not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                if (fh.metadata() or {}).get("prompt") != prompt:
                    return None  # hash collision or foreign file: recompute
                t = {k: fh.get_tensor(k) for k in ("tokens", "pooled", "mask")}
        except Exception as exc:  # a torn or corrupt file is a miss, not a crash  # noqa: BLE001
            log.warning("text cache %s unreadable (%s); re-encoding", path, exc)
            return None
        if t["tokens"].shape != (self.max_length, self.hidden_size):
            return None
        return t["tokens"], t["pooled"], t["mask"].bool()

    def _write_disk(self, prompt: str, entry: tuple[Tensor, Tensor, Tensor]) -> None:
        path = self._disk_path(prompt)
        if path is None:
            return
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        info = path.parent / "encoder.json"
        if not info.is_file():
            info.write_text(json.dumps({"path": str(self.path.absolute()), "kind": self.kind, "max_length":
                                        self.max_length, "hidden_size": self.hidden_size}, indent=2) + "\n")
        tokens, pooled, mask = entry
        # atomic: concurrent ranks or a kill never leave a half-written entry
        with atomic_path(path) as tmp:
            save_file({"tokens": tokens.contiguous(), "pooled": pooled.contiguous(), "mask": mask.to(torch.uint8)},
                      str(tmp), metadata={"prompt": prompt, "encoder_hash": self.encoder_hash})

    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """Embeddings of ``prompts`` on ``self.device``: tokens (B, L, D), pooled (B, D), mask (B, L).

        Each unique prompt is encoded once per process (memory cache) and once per encoder
        (disk cache, when ``cache_dir`` was given).
        """
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts; wrap a single prompt in a list")
        if not prompts:
            raise ValueError("encode got no prompts")
        todo: list[str] = []
        for p in dict.fromkeys(prompts):  # unique, in order
            if p in self._memory:
                self.stats.memory_hits += 1
                continue
            entry = self._read_disk(p)
            if entry is not None:
                self.stats.disk_hits += 1
                self._memory[p] = entry
            else:
                todo.append(p)
        if todo:
            self.stats.misses += len(todo)
            for p, entry in zip(todo, self._run(todo)):
                self._memory[p] = entry
                self._write_disk(p, entry)
        rows = [self._memory[p] for p in prompts]
        return TextEmbedding(
            tokens=torch.stack([r[0] for r in rows]).to(self.device),
            pooled=torch.stack([r[1] for r in rows]).to(self.device),
            mask=torch.stack([r[2] for r in rows]).to(self.device),
        )

    def null_embedding(self, batch: int = 1) -> TextEmbedding:
        """The empty prompt's embedding, repeated ``batch`` times: CFG's unconditional input."""
        e = self.encode([""])
        return TextEmbedding(e.tokens.expand(batch, -1, -1), e.pooled.expand(batch, -1), e.mask.expand(batch, -1))

    def null_cond(self) -> dict[str, Tensor]:
        """``null_cond`` for objectives and samplers: one sample's empty-prompt context (L, D) and mask (L,).

        Pass it as ``objective.loss(..., null_cond=enc.null_cond())`` when training with
        ``cond_drop_prob`` and as ``samplers.sample(..., null_cond=enc.null_cond())`` with a
        guidance scale != 1, so the dropped and the guided branches see the same empty prompt.
        """
        e = self.encode([""])
        return {"context": e.tokens[0], "context_mask": e.mask[0]}

    def __repr__(self) -> str:
        return (f"TextEncoder({self.kind}, path={str(self.path)!r}, hidden={self.hidden_size}, "
                f"max_length={self.max_length}, hash={self.encoder_hash})")


# --------------------------------------------------------------------------------------------
# integration helpers (training loss, generation)
# --------------------------------------------------------------------------------------------


def text_condition(prompts: Sequence[str], encoder: TextEncoder, device: torch.device | str | None = None
                   ) -> dict[str, Tensor]:
    """``{"context": (B, L, D), "context_mask": (B, L)}`` for ``prompts``: the net's text inputs."""
    cond = encoder.encode(list(prompts)).as_cond()
    return {k: v.to(device) for k, v in cond.items()} if device is not None else cond


# Embeddings a TextConditioner holds on the training device (CLIP-L: 236 kB a prompt, so ~4500
# prompts); a larger set is read from the encoder's host cache each step.
DEVICE_TABLE_LIMIT = 1 << 30


class TextConditioner:
    """Case ids -> cross-attention inputs, for a training loss whose batches carry ``case_id``.

    ``prompts`` maps case id -> prompt (from :func:`medidiff.conditioning.prompts.prompts_for_manifest`).
    All prompts can be encoded up front (:meth:`warm`) so training steps only read the cache.

    Asked for a ``device``, every prompt's tokens and mask (and the empty prompt's) are put there
    once, and a step only stacks them there: the encoder's cache lives in host memory, and moving
    each step's embeddings from it took three pageable copies, each a host-device sync, plus three
    more for the empty prompt (text_flow's step with CUDA graphs waited on 4 syncs,
    benchmarks/results/loop_h200_20261201d). The values are the same. Above
    :data:`DEVICE_TABLE_LIMIT` bytes of embeddings the steps read the host cache as before.
    """

    def __init__(self, encoder: TextEncoder, prompts: Mapping[str, str]) -> None:
        self.encoder = encoder
        self.prompts = dict(prompts)
        # device -> prompt -> (tokens (L, D), mask (L,)) on that device; None: too large, read the host cache
        self._tables: dict[torch.device, dict[str, tuple[Tensor, Tensor]] | None] = {}

    def _unique_prompts(self) -> list[str]:
        """Every case's prompt once, and the empty one (classifier-free guidance's)."""
        return list(dict.fromkeys([*self.prompts.values(), ""]))

    def warm(self, batch_size: int = 64) -> None:
        unique = self._unique_prompts()
        for i in range(0, len(unique), batch_size):
            self.encoder.encode(unique[i:i + batch_size])

    def _table(self, device: torch.device) -> dict[str, tuple[Tensor, Tensor]] | None:
        if device not in self._tables:
            unique = self._unique_prompts()
            size = len(unique) * self.encoder.max_length * (self.encoder.hidden_size * 4 + 1)
            if size > DEVICE_TABLE_LIMIT:
                log.info("text embeddings of %d prompts (%.1f GB) stay in host memory: each step copies its own",
                         len(unique), size / 1e9)
                self._tables[device] = None
            else:
                table = {}
                for i in range(0, len(unique), 64):
                    e = self.encoder.encode(unique[i:i + 64])
                    tokens, mask = e.tokens.to(device), e.mask.to(device)
                    table.update({p: (tokens[j], mask[j]) for j, p in enumerate(unique[i:i + 64])})
                self._tables[device] = table
        return self._tables[device]

    def __call__(self, case_ids: Sequence[str], device: torch.device | str | None = None) -> dict[str, Tensor]:
        missing = [c for c in case_ids if c not in self.prompts]
        if missing:
            raise MedidiffError(
                f"no prompt for case(s) {missing[:5]}: add 'text' fields to the manifest "
                "(`medidiff manifest prompts`) or use conditioning.text.prompts: auto"
            )
        prompts = [self.prompts[c] for c in case_ids]
        table = self._table(torch.device(device)) if device is not None else None
        if table is None:
            return text_condition(prompts, self.encoder, device)
        rows = [table[p] for p in prompts]
        return {"context": torch.stack([r[0] for r in rows]), "context_mask": torch.stack([r[1] for r in rows])}

    def null_cond(self, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """The empty prompt's context and mask (see :meth:`TextEncoder.null_cond`), on ``device``."""
        table = self._table(torch.device(device)) if device is not None else None
        if table is None:
            cond = self.encoder.null_cond()
            return {k: v.to(device) for k, v in cond.items()} if device is not None else cond
        tokens, mask = table[""]
        return {"context": tokens, "context_mask": mask}


def net_config_for_text(net_cfg: Any, encoder: TextEncoder) -> Any:
    """``net_cfg`` (a NetConfig) with ``cross_attention_dim`` = the encoder's hidden size.

    A different non-null ``cross_attention_dim`` is an error (it would silently mismatch the
    encoder's tokens); attention levels must exist since cross-attention lives in them.
    """
    import dataclasses

    d = encoder.hidden_size
    if net_cfg.cross_attention_dim not in (None, d):
        raise MedidiffError(
            f"net.cross_attention_dim is {net_cfg.cross_attention_dim} but the text encoder {encoder.path} "
            f"has hidden size {d}: set net.cross_attention_dim: {d} (or null to derive it)"
        )
    if not (any(net_cfg.attention_levels) or net_cfg.mid_attention):
        raise MedidiffError(
            "text conditioning needs attention blocks (cross-attention lives in them): set "
            "net.attention_levels (e.g. [false, true, true]) or net.mid_attention: true"
        )
    return dataclasses.replace(net_cfg, cross_attention_dim=d)


def read_prompts_file(path: str | Path, num: int | None = None) -> list[str]:
    """Prompts for ``medidiff generate --prompts FILE``: one per line, blank lines and ``#`` lines skipped.

    With ``num``: one prompt is repeated ``num`` times, otherwise the file must hold exactly
    ``num`` prompts (sample i gets line i), so no prompt is silently dropped or reused.
    """
    path = Path(path)
    if not path.is_file():
        raise MedidiffError(f"{path}: prompts file not found (one prompt per line)")
    prompts = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise MedidiffError(f"{path}: no prompts (one per line; lines starting with # are comments)")
    if num is None:
        return prompts
    if len(prompts) == 1:
        return prompts * num
    if len(prompts) != num:
        raise MedidiffError(
            f"{path}: {len(prompts)} prompts for {num} samples: give one prompt (used for all) or exactly {num}"
        )
    return prompts
