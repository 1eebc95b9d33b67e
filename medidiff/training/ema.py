"""Exponential moving average of model weights, with warm-up, for sampling from smoothed weights.

Works from an *iterable of parameters*, not a module, so the training engine can pass
parameters it gathered itself (under DeepSpeed ZeRO-3 ``model.parameters()`` are empty
placeholders until gathered, see FIELD-NOTES). The shadow copy is float32 whatever the
training dtype: averaging bf16 weights with decay 0.9999 would round every update away
(bf16 has 8 mantissa bits, an update of 1e-4 relative is far below its resolution).

Warm-up (decay grows with the number of updates so early, bad weights are forgotten fast):

* ``hyperbolic``: ``decay = min(max_decay, (1 + step) / (10 + step))``, the schedule of
  TensorFlow's ExponentialMovingAverage ``num_updates`` used by DDPM/LDM codebases.
* ``power``: ``decay = 1 - (1 + step / inv_gamma) ** -power`` clipped to [min_decay, max_decay]
  (diffusers ``EMAModel``, after @crowsonkb; power 2/3 suits ~1M-step runs, 3/4 shorter ones:
  with power 3/4 the decay reaches 0.999 at 10k steps and 0.9999 at 215k).
* ``none``: ``decay = max_decay`` from the first update.

Sharded masters (DeepSpeed ZeRO-1/2 and its bf16 optimizer, several ranks): each rank holds the
fp32 master of only a piece of each parameter. :meth:`EMA.update_pieces` averages this rank's
pieces into its own piece of the shadow (a few multi-tensor kernels, no communication), and
:meth:`EMA.gather_pieces` assembles the whole shadow on every rank with one all-reduce when it is
read (checkpoint, validation, previews). Assembling every step instead took one collective per
parameter. Until the gather, reading ``shadow`` is refused: it would be stale.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["EMAConfig", "EMA"]


@dataclass
class EMAConfig:
    """The ``train.ema`` section."""

    max_decay: float = 0.9999
    warmup: Literal["hyperbolic", "power", "none"] = "hyperbolic"
    power: float = 2 / 3  # (power warm-up)
    inv_gamma: float = 1.0  # (power warm-up)
    min_decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_decay <= self.max_decay < 1.0:
            raise ValueError(f"need 0 <= min_decay <= max_decay < 1, got {self.min_decay}, {self.max_decay}")
        if self.power <= 0 or self.inv_gamma <= 0:
            raise ValueError("power and inv_gamma must be positive")


def _params(target: nn.Module | Iterable[Tensor]) -> list[Tensor]:
    return list(target.parameters()) if isinstance(target, nn.Module) else list(target)


class EMA:
    """Float32 shadow weights updated as ``shadow = decay * shadow + (1 - decay) * param``."""

    def __init__(
        self,
        params: nn.Module | Iterable[Tensor],
        config: EMAConfig | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> None:
        self.config = config or EMAConfig()
        self._shadow: list[Tensor] = [
            p.detach().to(device=device if device is not None else p.device, dtype=torch.float32).clone()
            for p in _params(params)
        ]
        self.num_updates = 0
        self._stored: list[Tensor] | None = None
        # pieces mode: (parameter index, start in its flattened elements, this rank's piece of the shadow)
        self._pieces: list[tuple[int, int, Tensor]] | None = None
        self._stale = False  # the pieces moved since the whole shadow was assembled

    @property
    def shadow(self) -> list[Tensor]:
        """The averaged weights, float32, in parameter order."""
        if self._stale:
            raise RuntimeError("EMA.shadow read after update_pieces without gather_pieces: every rank must gather "
                               "the pieces first")
        return self._shadow

    def decay(self, step: int) -> float:
        """Decay for optimizer step ``step`` (0-based) under the configured warm-up."""
        c = self.config
        if c.warmup == "none":
            return c.max_decay
        if c.warmup == "hyperbolic":
            value = (1 + step) / (10 + step)
        else:
            value = 1 - (1 + step / c.inv_gamma) ** -c.power
        return float(min(c.max_decay, max(c.min_decay, value)))

    def _check(self, params: list[Tensor], what: str) -> None:
        if len(params) != len(self.shadow):
            raise ValueError(
                f"EMA.{what}: got {len(params)} parameters, the EMA holds {len(self.shadow)}: pass the same "
                "parameters in the same order (under ZeRO-3 gather them first)"
            )
        for i, (p, s) in enumerate(zip(params, self.shadow)):
            if p.shape != s.shape:
                raise ValueError(
                    f"EMA.{what}: parameter {i} has shape {tuple(p.shape)}, the EMA has {tuple(s.shape)}"
                    " (a ZeRO-3 placeholder? gather the parameters first)"
                )

    @torch.no_grad()
    def update(self, params: nn.Module | Iterable[Tensor], step: int | None = None) -> float:
        """Average ``params`` into the shadow; ``step`` defaults to the number of past updates.

        Returns the decay used (log it).
        """
        params = _params(params)
        if self._pieces is not None:
            raise RuntimeError("EMA.update after update_pieces: one EMA takes whole parameters or pieces, not both")
        self._check(params, "update")
        decay = self.decay(self.num_updates if step is None else step)
        if self.shadow:
            # multi-tensor lerps instead of one kernel per parameter (small 3D steps spend much of
            # their time launching kernels); chunked so the fp32 copies stay small for big models
            for i in range(0, len(self.shadow), 64):
                shadow = self.shadow[i:i + 64]
                # fp32 masters on the shadow's device are read as they are (no_grad): a detached
                # fp32 view of each cost ~0.7 us of host time a parameter, every step (398 in text_flow)
                sources = [p if p.dtype == torch.float32 and p.device == s.device
                           else p.detach().to(device=s.device, dtype=torch.float32)
                           for s, p in zip(shadow, params[i:i + 64])]
                torch._foreach_lerp_(shadow, sources, 1.0 - decay)
        self.num_updates += 1
        return decay

    @torch.no_grad()
    def update_pieces(self, pieces: Sequence[tuple[int, int, Tensor]], step: int | None = None) -> float:
        """Average pieces of the parameters into the same pieces of the shadow; returns the decay.

        ``pieces``: ``(i, start, values)``, the elements ``start:start + values.numel()`` of parameter
        ``i`` flattened in its logical (row-major) order, as this rank holds them; the same layout on
        every call. The rest of the shadow is left until :meth:`gather_pieces`.
        """
        if self._pieces is None:  # this rank's pieces of the shadow, cut once (after any load_state_dict)
            for i, start, values in pieces:
                if i >= len(self._shadow) or start < 0 or start + values.numel() > self._shadow[i].numel():
                    raise ValueError(f"EMA.update_pieces: piece ({i}, {start}, {values.numel()}) is outside the "
                                     f"{len(self._shadow)} parameters the EMA holds")
            self._pieces = [(i, start, self._shadow[i].reshape(-1)[start:start + v.numel()].clone())
                            for i, start, v in pieces]
        elif [(i, s) for i, s, _ in self._pieces] != [(i, s) for i, s, _ in pieces]:
            raise ValueError("EMA.update_pieces: the pieces changed layout between updates")
        decay = self.decay(self.num_updates if step is None else step)
        targets = [t for _, _, t in self._pieces]
        sources = [v.detach().to(device=t.device, dtype=torch.float32).reshape(-1) for t, (_, _, v) in zip(targets, pieces)]
        for k in range(0, len(targets), 64):  # multi-tensor lerps, chunked as in update
            torch._foreach_lerp_(targets[k:k + 64], sources[k:k + 64], 1.0 - decay)
        self.num_updates += 1
        self._stale = True
        return decay

    @torch.no_grad()
    def gather_pieces(self, group: Any = None) -> None:
        """Assemble the whole shadow on every rank from each rank's pieces: one all-reduce (a sum of
        disjoint pieces) over ``group``, the default process group if None. Every rank must call it;
        without a process group the pieces must cover every parameter."""
        if not self._stale or self._pieces is None:
            return
        sizes = [s.numel() for s in self._shadow]
        offsets = [0, *itertools.accumulate(sizes[:-1])]
        flat = torch.zeros(sum(sizes), dtype=torch.float32, device=self._shadow[0].device)
        for i, start, piece in self._pieces:
            flat[offsets[i] + start:offsets[i] + start + piece.numel()].copy_(piece)
        covered = torch.tensor([sum(p.numel() for _, _, p in self._pieces)], dtype=torch.int64, device=flat.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flat, group=group)
            torch.distributed.all_reduce(covered, group=group)
        if int(covered) != flat.numel():  # overlapping or missing pieces: the sum would be wrong
            raise RuntimeError(f"EMA.gather_pieces: the ranks' pieces hold {int(covered)} elements, the parameters "
                               f"{flat.numel()}")
        for s, off, n in zip(self._shadow, offsets, sizes):
            s.copy_(flat[off:off + n].view(s.shape))
        self._stale = False

    @torch.no_grad()
    def copy_to(self, target: nn.Module | Iterable[Tensor]) -> None:
        """Write the averaged weights into ``target`` (cast to each parameter's dtype/device)."""
        params = _params(target)
        self._check(params, "copy_to")
        for s, p in zip(self.shadow, params):
            p.copy_(s.to(device=p.device, dtype=p.dtype))

    @torch.no_grad()
    def store(self, target: nn.Module | Iterable[Tensor]) -> None:
        """Keep a copy of the current (training) weights, e.g. before ``copy_to`` for validation."""
        self._stored = [p.detach().clone() for p in _params(target)]

    @torch.no_grad()
    def restore(self, target: nn.Module | Iterable[Tensor]) -> None:
        """Put back the weights saved by :meth:`store`."""
        if self._stored is None:
            raise RuntimeError("EMA.restore called without a matching EMA.store")
        params = _params(target)
        if len(params) != len(self._stored):
            raise ValueError(f"EMA.restore: got {len(params)} parameters, stored {len(self._stored)}")
        for saved, p in zip(self._stored, params):
            p.copy_(saved)
        self._stored = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "shadow": [s.clone() for s in self.shadow],
            "num_updates": self.num_updates,
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = state["shadow"]
        if len(shadow) != len(self._shadow) or any(a.shape != b.shape for a, b in zip(shadow, self._shadow)):
            raise ValueError(
                "EMA checkpoint does not match this model: "
                f"{len(shadow)} tensors vs {len(self.shadow)} (was the architecture changed?)"
            )
        self._shadow = [s.detach().to(device=o.device, dtype=torch.float32).clone() for s, o in zip(shadow, self._shadow)]
        self._pieces, self._stale = None, False  # re-cut from the loaded shadow at the next update_pieces
        self.num_updates = int(state["num_updates"])
        if "config" in state:
            self.config = EMAConfig(**state["config"])
