"""Configuration of conditioning (the ``conditioning:`` section): label maps and text prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["PromptFact", "TextConfig", "ConditioningConfig"]

PromptFact = Literal["modalities", "location", "volumes"]


@dataclass
class TextConfig:
    """Text conditioning through a frozen text encoder read by cross-attention (the ``text:`` part).

    * ``encoder``: a LOCAL folder holding a Hugging Face text encoder (``config.json``, weights
      ``model.safetensors`` or ``pytorch_model.bin``, tokenizer files), e.g. the text tower of
      ``openai/clip-vit-large-patch14`` saved with ``save_pretrained``. ``""`` = no text
      conditioning. Nothing is ever downloaded. The net's ``cross_attention_dim`` must equal the
      encoder's hidden size (see :func:`medidiff.conditioning.text.net_config_for_text`).
    * ``max_length``: tokens per prompt (every prompt is padded to it, so contexts have one shape);
      null = the tokenizer's own limit (77 for CLIP).
    * ``cache_dir``: on-disk embedding cache; ``""`` = ``<run>/text_cache``.
    * ``prompts``: ``auto`` uses a case's manifest ``text`` field when present and otherwise writes
      a factual prompt from its label map (:func:`medidiff.conditioning.prompts.build_prompt`);
      ``manifest`` requires a ``text`` field on every case.
    * ``facts``: what built prompts state (modalities, tumour location, sub-region volumes).
    Classifier-free guidance: set ``objective.cond_drop_prob`` (0.1-0.2) to learn the
    unconditional model from the empty prompt, and ``sampler.guidance_scale`` to use it.
    """

    encoder: str = ""
    max_length: int | None = None
    cache_dir: str = ""
    prompts: Literal["auto", "manifest"] = "auto"
    facts: list[PromptFact] = field(default_factory=lambda: ["modalities", "location", "volumes"])

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be >= 2 (start and end tokens) or null, got {self.max_length}")
        if not self.facts:
            raise ValueError("facts must name at least one of 'modalities', 'location', 'volumes'")
        if len(set(self.facts)) != len(self.facts):
            raise ValueError(f"facts has duplicates: {self.facts}")

    @property
    def enabled(self) -> bool:
        return bool(self.encoder)


@dataclass
class ConditioningConfig:
    """How label maps and text enter a diffusion model.

    * ``mask``: the WT/TC/ET region masks of a case condition the model by channel
      concatenation (Med-DDPM, arXiv:2305.18453); generation then needs masks.
    * ``generate_labels``: the region masks are generated with the image as extra channels, so
      every unconditional sample comes with its segmentation.
    Both need ``data.label_mode: regions``.
    * ``generate_brain``: the brain mask (where any modality is above the background, as skull
      stripping leaves real data) is generated as one more channel, and each generated case is cut
      to the background outside it (its largest component, holes filled): real skull-stripped
      brains step to a hard zero, and a model's soft edge reads as a CSF shell and faint haze
      outside (docs/quality.md). Not with ``mask`` (the conditioning masks give no brain).
    * ``text``: prompts through a frozen text encoder, read by the net's cross-attention
      (:class:`TextConfig`); combines with either of the above.
    """

    mask: bool = False
    generate_labels: bool = False
    generate_brain: bool = False
    text: TextConfig = field(default_factory=TextConfig)

    def __post_init__(self) -> None:
        if self.mask and self.generate_labels:
            raise ValueError("mask conditioning and generate_labels exclude each other: a given mask is the label")
        if self.mask and self.generate_brain:
            raise ValueError("conditioning.generate_brain is for unconditional models: a mask-conditioned one "
                             "generates around the given masks (set conditioning.mask: false)")
