"""Tiny random text encoders written to a local folder, so tests never download anything.

* :func:`write_tiny_clip`: a ``CLIPTextModel`` (hidden 32, 2 layers, 2 heads) with a real CLIP
  byte-level BPE tokenizer whose vocabulary and merges are *trained here* on the test prompts
  (``tokenizers``' BPE trainer with CLIP's normaliser, pre-tokeniser and ``</w>`` suffix), saved
  as ``vocab.json`` + ``merges.txt`` and reloaded through ``CLIPTokenizer``: the same files a real
  CLIP checkpoint ships, so the loader's CLIP path is exercised for real.
* :func:`write_tiny_bert`: a ``BertModel`` with a WordPiece ``vocab.txt``, the shape of an
  encoder-only biomedical tower (PubMedBERT, BioBERT), for the ``AutoModel`` path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = ["DEFAULT_CORPUS", "write_tiny_clip", "write_tiny_bert"]

# Words the tests use; any other word falls back to byte-level pieces (or the unknown token).
DEFAULT_CORPUS: tuple[str, ...] = (
    "tumour in the left hemisphere",
    "tumour in the right hemisphere",
    "brain mri t1 t1 post-contrast t2 flair.",
    "no tumour. tumour in the left right frontal parietal temporal occipital lobe;",
    "necrotic core oedema enhancing tumour 0.12 1.5 ml, whole",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 . , ; ( )",
)

_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _train_clip_bpe(corpus: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-style BPE vocabulary and merges learned from ``corpus`` (whole words where seen)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=4000, special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), end_of_word_suffix="</w>", show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges


def write_tiny_clip(
    out: str | Path,
    *,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_length: int = 32,
    corpus: Iterable[str] = DEFAULT_CORPUS,
) -> Path:
    """Save a random ``CLIPTextModel`` + ``CLIPTokenizer`` to ``out``; returns ``out``.

    ``seed`` sets the weights: two folders with different seeds are different encoders.
    """
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _train_clip_bpe(corpus)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer.from_pretrained(out, model_max_length=max_length)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=max_length, projection_dim=hidden,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = CLIPTextModel(config)
    # CLIP initialises token embeddings with std 0.02 (a trained model spreads them out); at that
    # scale a random 2-layer tower maps every prompt to nearly the same states (cosine ~0.98),
    # so spread the tokens like a trained vocabulary: distinct words -> distinct states.
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_tiny_bert(
    out: str | Path, *, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 2, max_length: int = 32,
    corpus: Iterable[str] = DEFAULT_CORPUS,
) -> Path:
    """Save a random ``BertModel`` + WordPiece ``BertTokenizer`` (vocab.txt) to ``out``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    words = sorted({w for line in corpus for w in line.lower().replace(".", " . ").replace(",", " , ").split()})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (out / "vocab.txt").write_text("\n".join(specials + [w for w in words if w not in specials]) + "\n")
    tokenizer = BertTokenizer.from_pretrained(out, model_max_length=max_length)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, max_position_embeddings=max_length,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
