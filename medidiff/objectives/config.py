"""Configuration of the training objective (the ``objective:`` section of an experiment)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["ObjectiveConfig", "COND_KEYS", "SPATIAL_WEIGHTS"]

# The conditioning inputs a net takes (medidiff.nets); CFG dropout can name any of them
# (``context_mask`` is dropped with ``context`` whether listed or not).
COND_KEYS: tuple[str, ...] = ("cond_image", "class_labels", "scalars", "context", "context_mask")

# The loss weights of latent positions found from each case's images or labels (medidiff.utils.tensor.
# spatial_weight_map), each with the name of the map the objective's loss takes for it.
SPATIAL_WEIGHTS: dict[str, str] = {"background_weight": "background", "edge_weight": "edge", "tumour_weight": "tumour"}


@dataclass
class ObjectiveConfig:
    """Which diffusion objective trains the denoiser, and how its loss is weighted.

    Fields marked (ddpm) or (flow) are used only by that objective type; the rest are common.
    """

    type: Literal["ddpm", "flow"] = "ddpm"
    # Network time: DDPM passes the integer step t in [0, num_train_steps - 1]; flow passes
    # t * num_train_steps, so a network's time embedding sees the same range for both.
    num_train_steps: int = 1000

    # --- (ddpm) ---
    schedule: Literal["linear", "cosine", "scaled_linear"] = "linear"
    # null = the schedule's paper default: linear 1e-4..0.02 (DDPM), scaled_linear
    # 0.00085..0.012 (LDM); cosine has no betas.
    beta_start: float | None = None
    beta_end: float | None = None
    # What the network outputs; v = sqrt(ab) eps - sqrt(1-ab) x0 (arXiv:2202.00512).
    # epsilon divides by sqrt(alpha_bar) to give x0: where a schedule's first sampling step has
    # a tiny alpha_bar (cosine: 2.4e-9 at T-1) that multiplies the net's error by hundreds, and
    # loading the experiment refuses the combination (ExperimentConfig.check_sampler).
    prediction: Literal["epsilon", "v", "x0"] = "epsilon"
    # Rescale the betas so alpha_bar[T-1] = 0: training sees pure noise at its last step, which
    # is where sampling starts (Lin et al. 2023, arXiv:2305.08891); needs prediction v (or x0).
    zero_terminal_snr: bool = False
    # Min-SNR-gamma loss weighting (arXiv:2303.09556; the paper recommends gamma = 5); null = off.
    min_snr_gamma: float | None = None

    # --- (flow) ---
    # Logit-normal t (arXiv:2403.03206 sec. 3.1) or uniform t.
    time_sampling: Literal["uniform", "logit_normal"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # Resolution-dependent shift t' = s t / (1 + (s - 1) t), s = (voxels / shift_base_voxels)
    # ** shift_power, applied to training times and to the sampling grid (SD3, MAISI-v2).
    # shift_power 0.5 is SD3's argument; 1/3 reproduces MONAI's RFlowScheduler for 3D.
    time_shift: bool = False
    shift_base_voxels: int = 32**3
    shift_power: float = 0.5
    # What the flow network outputs: the velocity eps - x0 (SD3, MAISI-v2), or the clean sample x0
    # (WDM-3D's choice for wavelet coefficients). An x0 net outputs exact zeros where the data is
    # zero (the background of skull-stripped MRI, every sub-band) as a constant; a velocity net must
    # cancel the noise there, x0_hat = x_t - t v_hat, and leaves its error as speckle. The x0 loss
    # is the velocity loss times t^2 (x0_hat - x0 = t (v - v_hat)).
    flow_target: Literal["velocity", "x0"] = "velocity"
    # (flow, x0 target) Per-sample loss weight max(t, 0.05)^-power. The x0 loss is the velocity
    # loss times t^2, so near the data (small t), where fine texture is decided, it hardly trains:
    # power 2 is the velocity loss's weighting with the x0 output kept (its clean zeros), 0 (the
    # default) the plain x0 loss. The floor caps the weight at 0.05^-power (400 at power 2). The
    # logged loss and per-band losses are weighted too: compare them between runs of one power only.
    x0_time_power: float = 0.0
    # (flow, x0 target) EDM's skip (arXiv:2206.00364 sec. 5): x0_hat = c_skip(t) x_t + c_out(t) F with
    # c_skip = (1-t) s^2 / ((1-t)^2 s^2 + t^2), c_out = t s / sqrt((1-t)^2 s^2 + t^2), s = this value (the
    # data's std; 0: off, the net outputs x0 itself). Near the data the net then returns its input plus a
    # correction; at t -> 1, c_skip -> 0 and the output is x0 (s F) with its clean zeros. Why: the shipped
    # x0 net's detail error below t = 0.1 is flat at 0.22 of the detail power, 7x worse than its input at
    # t = 0.02 (benchmarks/results/denoise_curve_cpu_20261202). The loss stays the x0 regression.
    x0_skip_sigma: float = 0.0
    # Per image channel (a modality or a generated mask: t1n, WT, brain), EDM's skip sigma in place of
    # x0_skip_sigma for that channel's latent channels, e.g. {t1n: 0.025, t1c: 0.025, t2w: 0.025, t2f: 0.025}
    # with x0_skip_sigma 0.05 for the masks; 0 turns the skip off for a channel (its net output is x0). Why:
    # the skip is set by the data's std, and with data.percentile_top 0 the brain has half the amplitude of
    # the masks: one skip for both grained the images at 0.05 and lost the tumours at 0.025 (4 mm,
    # benchmarks/results/scale_matched_cpu_20261203). Needs channels named by image (wavelet or pixel latents).
    x0_skip_sigmas: dict[str, float] | None = None

    # --- common ---
    loss: Literal["l2", "l1"] = "l2"  # MAISI-v2 trains its flow model with L1
    # Per-channel (or per wavelet sub-band) loss weights, one per network output channel;
    # the loss is sum_c w_c L_c / sum_c w_c. null = all channels equal.
    channel_weights: list[float] | None = None
    # Loss weight of the wavelet detail sub-bands (every band but the coarsest, LLL) relative to
    # LLL; it multiplies channel_weights. Raw Haar detail coefficients of brain MRI carry about
    # 1e-3 of LLL's variance, so an unweighted L2 hardly trains them: the x0 model shipped on
    # 2026-11-30 was 3-13x too weak in the top spectral bands. Wavelet latents only; 1 = WDM-3D.
    detail_weight: float = 1.0
    # Per image channel (a modality or a generated label channel: t1n, t2f, WT, ...), the weight of
    # that channel's detail sub-bands, in place of detail_weight for it: e.g. {t1n: 3000} with
    # detail_weight 1000. At 1000 for all, t1n's top spectral band stayed 3x weak while t2f's
    # histogram drifted (quality_wdm_20261130). Wavelet latents only.
    detail_weights: dict[str, float] | None = None
    # Loss weight of the latent positions whose whole block is background in every modality (the
    # exactly-black outside of skull-stripped scans), relative to the rest of the volume; the weights
    # are normalised per case, so the loss keeps its scale. The detail-weighted anatomy models left a
    # faint haze over 88-97 % of the outside (real: 0 there; not the sampler's clamp:
    # benchmarks/results/haze_cpu_20261201): the images' coarse band, which carries it, is a tiny share
    # of a detail-weighted loss (0.25 % at detail 100, quality_scale.py's variants). 1 = off. Diffusion
    # stage trained on images only (a latent cache holds none): refused elsewhere. Measured at 10 on the
    # anatomy recipe (benchmarks/results/quality_scale_h200_20261202): haze RMS only 0.0081 -> 0.0059, and
    # brains a third smaller, blurrier, a quarter tumour-free: do not use 10; smaller weights are untested.
    background_weight: float = 1.0
    # Loss weight of the latent positions around the brain's boundary (those whose 3x3x3 neighbourhood holds
    # background and brain voxels: training.diffusion.edge_blocks), where the generated brains draw their
    # edge a voxel wider than real (the CSF-like shell of the tissue QC: benchmarks/results/
    # rim_denoise_cpu_20261202, session 22). 1 = off; multiplies background_weight where both hold. The same
    # stage limits as background_weight. Untested on a GPU run as of session 22.
    edge_weight: float = 1.0
    # Loss weight of the latent positions at the tumour (those whose block, or a neighbouring block, holds a WT
    # voxel of the case's label: training.diffusion.tumour_blocks), where t1c's enhancing tumour came out too
    # dark against the normal brain (ET median - normal brain median +0.94 against real's +1.21 on the
    # outside-the-tumour scale: benchmarks/results/tumour_contrast_cpu_20261204, session 33). The tumour is ~1 %
    # of the grid, so its contrast is a small share of the loss. 1 = off; multiplies the other spatial weights
    # where they overlap. Needs labelled cases and the stage limits of background_weight. At 5 on one 2 mm seed
    # (quality_scale_h200_20261204d): t1c's stray bright voxels gone, its histogram W1 halved, Frechet 24x ->
    # 14x, but 98 % of cases with a tumour and several a case (the bias below): not shipped.
    tumour_weight: float = 1.0
    # The noise level (noise std over signal: t / (1 - t) on the flow path, sqrt((1 - ab) / ab) for DDPM) above
    # which the spatial weights above are off (1 everywhere); null = at every level. Why: a weight that depends
    # on x0 moves the loss's optimum, D*(x_t) = E[w x0 | x_t] / E[w | x_t], wherever x_t leaves x0 uncertain:
    # tumour_weight 5 made every case tumour-positive by that (a position that may hold a tumour with
    # probability p is denoised as if 5p / (5p + 1 - p), 0.8 -> 0.95), and drew several tumours a case (2 mm:
    # 98 % of cases with a tumour against real's 80 %, benchmarks/results/quality_scale_h200_20261204d). Below
    # a small noise level x_t shows where the tumour is and E[w | x_t] is near constant. Applies to all three
    # spatial weights. Measured at 1.0 with tumour_weight 5 on the 4 mm CPU proxy only: it did not take the
    # extra tumours back (8 of 32 cases with two or more, plain weight 3, no weight 0;
    # benchmarks/results/tumour_weight_cpu_20261204), so the bias is not all of it there. Untrained at 2 mm.
    spatial_weight_max_sigma: float | None = None
    # Where tumour_weight's map comes from: "label" (the case's WT label, by which the weight depends on x0 and
    # biases the optimum toward tumours, as above) or "input" (the generated WT mask's coarse band in the net's
    # noisy input, above its midpoint: training.diffusion.input_tumour_blocks; a function of x_t, so the
    # optimum stays E[x0 | x_t]). "input" needs conditioning.generate_labels and a wavelet latent. At 4 mm with
    # spatial_weight_max_sigma 1 (one seed) it kept t1c's ET contrast gain and still drew several tumours in 6
    # of 32 cases (tumour_weight_cpu_20261204): a weight's effect on what the net learns first, not only its
    # optimum, may be at work. Untrained at 2 mm.
    tumour_map: Literal["label", "input"] = "label"
    # Which latent channels tumour_weight weighs: "all", or "images" (the generated masks' channels unweighted, so
    # the masks, which place the tumours, are learnt as without the weight; the images' ET contrast and bright
    # voxels, which the weight was for, are weighted). Why: with every channel weighted the 4 mm arms drew extra
    # tumours even with the input map (tumour_weight_cpu_20261204). Needs a wavelet latent's named channels. At 4 mm
    # (input map, limit 1, one seed) it drew fewer extra tumours (2 of 32 against 6) and lost the t1c gain.
    tumour_weight_channels: Literal["all", "images"] = "all"
    # Classifier-free guidance: probability of replacing a sample's conditioning by the null
    # conditioning during training (arXiv:2207.12598 uses 0.1-0.2).
    cond_drop_prob: float = 0.0
    # Which conditioning keys are dropped together; null = every key in the batch's cond.
    # Keep e.g. the cascade's low-res `cond_image` out of this list to never drop it.
    cond_drop_keys: list[str] | None = None

    def loss_channel_weights(self) -> list[float] | None:
        """The per-channel loss weights, once ``build_objective`` has folded ``detail_weight`` in
        (it needs the codec's channel names); an unresolved detail weight is refused, not ignored."""
        if self.detail_weight != 1.0 or self.detail_weights:
            from medidiff.errors import MedidiffError

            raise MedidiffError(f"objective.detail_weight ({self.detail_weight}) / detail_weights ({self.detail_weights}) "
                                "is not resolved: build the objective "
                                "with the codec's channel names (build_objective(config, codec.channel_names))")
        return self.channel_weights

    def spatial_weight_active(self, sigma: Tensor) -> Tensor | None:
        """(B,) bool: the samples, by their noise level ``sigma`` (noise std over signal), that the spatial
        weights apply to; None when they apply at every level (``spatial_weight_max_sigma`` null)."""
        return None if self.spatial_weight_max_sigma is None else sigma <= self.spatial_weight_max_sigma

    def spatial_weights(self) -> dict[str, float]:
        """The spatial loss weights by name (:data:`SPATIAL_WEIGHTS`; 1 = off)."""
        return {key: float(getattr(self, key)) for key in SPATIAL_WEIGHTS}

    def __post_init__(self) -> None:
        if self.num_train_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, got {self.num_train_steps}")
        if self.schedule == "cosine" and (self.beta_start is not None or self.beta_end is not None):
            raise ValueError("the cosine schedule has no beta_start/beta_end: remove them or use schedule 'linear'")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise ValueError(
                f"min_snr_gamma must be positive (5 in arXiv:2303.09556) or null, got {self.min_snr_gamma}"
            )
        if self.type == "flow" and self.min_snr_gamma is not None:
            raise ValueError("min_snr_gamma weights DDPM losses only; remove it for objective type 'flow'")
        if self.zero_terminal_snr:
            if self.type != "ddpm":
                raise ValueError("zero_terminal_snr rescales DDPM betas; flow paths already end in pure noise "
                                 "(remove it for objective type 'flow')")
            if self.prediction == "epsilon":
                raise ValueError("zero_terminal_snr with prediction 'epsilon': at alpha_bar = 0 the net's eps "
                                 "gives no x0 (x0 = (x_t - sqrt(1-ab) eps) / sqrt(ab)): set prediction: v "
                                 "(arXiv:2305.08891 sec. 3.2)")
            if self.min_snr_gamma is not None:
                raise ValueError("min_snr_gamma weights the zero-SNR step by 0, so the net never learns the step "
                                 "sampling starts from: remove min_snr_gamma or zero_terminal_snr")
        if not (math.isfinite(self.x0_time_power) and 0.0 <= self.x0_time_power <= 2.0):
            raise ValueError(f"x0_time_power must be in [0, 2] (2: the velocity loss's weighting), got {self.x0_time_power}")
        if self.x0_time_power and (self.type != "flow" or self.flow_target != "x0"):
            raise ValueError("x0_time_power weights the x0 loss of a flow model: it needs type: flow and "
                             "flow_target: x0 (a velocity loss already weighs small t fully)")
        if not (math.isfinite(self.x0_skip_sigma) and self.x0_skip_sigma >= 0):
            raise ValueError(f"x0_skip_sigma must be >= 0 (0: off), got {self.x0_skip_sigma}")
        bad = {k: v for k, v in (self.x0_skip_sigmas or {}).items() if not (math.isfinite(v) and v >= 0)}
        if bad:
            raise ValueError(f"x0_skip_sigmas must be numbers >= 0 (0: off for that channel), got {bad}")
        if (self.x0_skip_sigma or self.x0_skip_sigmas) and (self.type != "flow" or self.flow_target != "x0"):
            raise ValueError("x0_skip_sigma(s) parameterises the x0 output of a flow model: it needs type: flow and "
                             "flow_target: x0 (a velocity net already returns x_t - t v)")
        if self.type != "flow" and self.flow_target != "velocity":
            raise ValueError("flow_target applies to objective type 'flow'; DDPM chooses with prediction "
                             "(epsilon, v or x0)")
        if self.logit_std <= 0:
            raise ValueError(f"logit_std must be positive, got {self.logit_std}")
        if self.shift_base_voxels <= 0 or self.shift_power <= 0:
            raise ValueError("shift_base_voxels and shift_power must be positive")
        if self.channel_weights is not None:
            if not self.channel_weights or any(w < 0 for w in self.channel_weights) or sum(self.channel_weights) <= 0:
                raise ValueError(
                    f"channel_weights must be non-negative with a positive sum, got {self.channel_weights}"
                )
        if not (math.isfinite(self.detail_weight) and self.detail_weight > 0):
            raise ValueError(f"detail_weight must be a positive number (1 = all sub-bands equal), got {self.detail_weight}")
        for key in SPATIAL_WEIGHTS:
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise ValueError(f"{key} must be a positive number (1 = off), got {getattr(self, key)}")
        msig = self.spatial_weight_max_sigma
        if msig is not None and not (math.isfinite(msig) and msig > 0):
            raise ValueError(f"spatial_weight_max_sigma must be a positive number or null (every level), got {msig}")
        bad = {k: v for k, v in (self.detail_weights or {}).items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"detail_weights must be positive numbers, got {bad}")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.cond_drop_keys is not None:
            # a misspelt key would drop nothing and leave the unconditional model untrained
            unknown = [k for k in self.cond_drop_keys if k not in COND_KEYS]
            if unknown or not self.cond_drop_keys:
                what = f"unknown {unknown}" if unknown else "an empty list drops nothing"
                raise ValueError(f"cond_drop_keys {self.cond_drop_keys}: {what}; name some of {list(COND_KEYS)}, "
                                 "or null for all")
