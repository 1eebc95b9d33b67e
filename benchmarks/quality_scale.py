"""Issue 16's next quality run: the shipped model's recipe (quality_ablation's x0 arm) on a larger
anatomy set, trained from several seeds side by side on one GPU, each scored on the background and
by ``medidiff evaluate`` (image, tissue, memorisation), with an interval over seeds.

Why: the shipped ``anatomy-2mm`` (x0 flow, wavelet, 11.6M parameters) keeps a clean background but
saw its 24 training cases (32 with the held-out fold) ~1260-1700 times, and 5 of 8 of its cases are
near copies of them; it was one seed. Here the same net and recipe train on ``--cases`` cases
(384: 288 training, fold 0's 96 held out) for ``--minutes`` each: at the ablation's ~6-7 steps/s per process, 8 minutes would be
~100 passes over the 288 training cases (an estimate; the run records its steps).

Steps (progress lines with UTC timestamps on stdout; each child's output in OUT/logs/):

1. data: ``--cases`` anatomy cases at 120x120x78 (seed 0, the shipped model's generator and shape),
   written by ``--workers`` processes; a manifest with 4 folds, fold 0 held out.
2. train: ``--seeds`` copies of ``quality_ablation.ARMS["x0_stats_off"]`` (seed s, run ``seed<s>``,
   ``train.max_minutes``; ``--set KEY=VALUE`` reaches every run) side by side, each in its own
   process; with ``--variants`` (VARIANTS: the texture ablation, e.g. ``x0 x0_detail10``) every
   variant's keys go on top, runs ``<variant>_seed<s>``, all side by side, scored by the same
   evaluation and summarised per variant (``--runs VARIANT:SEED ...``: the runs as pairs instead, e.g.
   two more seeds of one recipe beside another recipe at a seed they share; ``--model DIR``: the first
   of ``--runs`` not trained but given, an exported model of that run's recipe and seed trained on this
   data, e.g. the shipped one, alone for the evaluations that need more cases or a net, or as a control
   beside trained runs, scored by the same nets); beside them, the evaluation's feature net and tissue segmenter are trained once on the
   real training split (``medidiff.eval.train_feature_net``, ``train_tissue_net``; each in its own
   process; ``--gpus N`` spreads runs, nets and evaluations over N cards, round-robin), so every seed's Frechet is on the same features and its tissue QC through the same
   instrument, and no evaluation trains a net (three tissue segmenters trained side by side were
   what ran past the budget on the 2 x H200 run).
   Each seed then exports its EMA weights (OUT/models/seed<s>: seed 0's is the folder
   ``benchmarks/pack_pretrained.py`` packs), generates ``--generate`` cases (seeds 0.., the
   model's own sampler: 30 Euler steps, x0 clipping, as the shipped model's card) and scores
   their background (``quality_common.background_scores``).
3. evaluate, in phases (``EVAL_PHASES``), each ``medidiff evaluate`` per seed side by side against
   the same manifest: the held-out fold is the floor and the tissue reference, the training folds
   (the cases the model saw) are what the memorisation audit compares with. The phases
   (``--phases``, EVAL_PHASES): realism (in process), memorisation (in process, against every training
   case), fidelity (the shared real-trained
   segmenter on the generated images and on the real held-out cases), image, tissue, and utility
   (opt-in: segmenters trained on the generated cases, tested on the real held-out fold). Fidelity
   and tissue use a seeded subset of ``--eval-real`` real cases a side (``eval.max_real``): each
   ``medidiff evaluate`` loads the real cases it uses, and 1536 cases in every phase did not fit a lease. Image
   loads every real case (since session 48), since session 50 once for every run in this process
   (``quality_common.image_evaluations_of``, with the shared feature net; no cap: four evaluations side by side
   each loaded the fold in 111 s and three of four stopped at a 5-minute cap, small_pair_h100_20261206; ~15 GB
   of host memory for the real side): its Frechet, MMD and PRDC read against the whole training fold, their
   floor from every held-out case, its real MS-SSIM pairs drawn from every training case (not comparable draw for
   draw with earlier reports), and its realism checks against the seeded subset max_real would load
   (``eval.realism_max_real``). Reports in OUT/eval/<run> (image) and OUT/eval/<run>_<phase>.
   ``--eval-epochs`` caps the feature net's and the tissue segmenter's epochs (default 10, about
   1150 steps of batch 2 on 230 cases; the plateau stop's patience of 15 never ends them earlier).
   ``--eval-minutes`` caps each ``medidiff evaluate`` phase's wall time (default 6; not the in-process realism,
   memorisation and image phases): evaluations still running then are
   stopped and the report names the seeds and phases that are missing, so the job ends inside its
   device budget with what it measured: each ``medidiff evaluate`` phase takes at most ``--eval-minutes`` + 10 s
   to stop (the in-process phases have no cap). The training step has no such cap: the seeds stop at ``--minutes``, the shared nets
   at ``--eval-epochs`` (the feature net took 6.3 min beside 3 seeds on the 2 x H200 run).
4. OUT/quality_scale.json and OUT/report.md: per seed, mean and interval over seeds; one PNG per
   seed (4 generated cases above 4 held-out real ones, full resolution, all modalities and labels).
   Both are written after training and again after every evaluation phase, so what a phase
   measured is on disk before the next one starts: on the first 2 x H200 run the three
   evaluations (tissue still training its segmenter) ran past the device budget and evaluate,
   which writes its report only at the end, left nothing. A missing seed or phase is named in the
   report.

Intervals over seeds: mean +- t(0.975, n-1) x std / sqrt(n) (a 95 % Student t interval; with 3
seeds it is wide, t = 4.30), with min and max beside it. Seeds are the only repeat here: the
cases within a seed are not independent draws of the training outcome.

    python3 benchmarks/quality_scale.py --out /tmp/job/quality_scale --minutes 8          # one H200: ~14 min
    python3 benchmarks/quality_scale.py --out /tmp/job/qs --seeds 1 --variants x0 x0_detail10 x0_detail100 --phases image
    python3 benchmarks/quality_scale.py --out /tmp/job/qs --gpus 2 --variants x0_detail100 x0_detail1000   # 2 cards
    python3 benchmarks/quality_scale.py --out /tmp/job/quality_scale --cases 1536 --model medidiff/pretrained/anatomy_2mm \
        --runs x0_detail100_labels_lll100_skip005:0 --nets .nets --phases image utility --generate 64   # no training
    python benchmarks/quality_scale.py --out /tmp/qs_smoke --smoke --device cpu           # CPU: ~3 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from quality_ablation import ARMS

from medidiff.cli.generate_cmd import FIRST_STAGE_SEED_OFFSET
from medidiff.eval.realism import spread_property_names
from quality_common import (FULL, MODALITIES, SMOKE, TIMED_OUT, comparison_figure, device_info, generate_and_score,
                            gpu_envs, held_out_cases, image_evaluations_of, log, make_anatomy_data, memorisation_audits_of,
                            overrides, real_scores, scale_overrides,
                            realism_checks_of, side_by_side, train_and_export, write_atomic)

ARM = "x0_stats_off"  # the recipe's base arm (the shipped model adds x0_detail100_labels_lll100's keys)


def _masks_lll(weight: int | None, images: int = 1, brain: int | None = None) -> str:
    """objective.channel_weights with the WT/TC/ET masks' coarse band (LLL) at ``weight`` (and the four
    images' at ``images``): the anatomy model's 56 output channels are 8 sub-bands x 7 image channels,
    LLL of t1n t1c t2w t2f WT TC ET first; with ``brain`` (conditioning.generate_brain) 64 channels, the
    brain mask's LLL after ET's at that weight; with ``weight`` None no mask channels (a mask-conditioned model
    draws only the four images: 32 channels)."""
    lll = [str(images)] * 4 + ([] if weight is None else [str(weight)] * 3) + ([] if brain is None else [str(brain)])
    return "[" + ",".join(lll + ["1"] * (7 * len(lll))) + "]"


def _images_skip(sigma: float) -> str:
    """objective.x0_skip_sigmas with the four images' EDM skip at ``sigma`` (the masks keep x0_skip_sigma)."""
    return "{" + ", ".join(f"{m}: {sigma}" for m in ("t1n", "t1c", "t2w", "t2f")) + "}"


# Med-DDPM's split: the WT/TC/ET masks in, the images out (every mask-conditioned variant's first two keys)
MASK_CONDITIONED = ["conditioning.generate_labels=false", "conditioning.mask=true"]


# Variants of the recipe trained side by side on the same data and scored by the same evaluation
# (--variants; each --seeds times): the texture ablation of issue 16. The shipped model (x0) was
# 3-13x too weak in the top 4 of 8 spectral bands, the bands the Haar detail coefficients hold;
# raw detail coefficients carry ~1e-3 of LLL's variance, so the unweighted loss hardly trains them.
VARIANTS: dict[str, list[str]] = {
    "x0": [],  # the base arm alone (detail weight 1)
    "x0_detail10": ["objective.detail_weight=10"],
    "x0_detail100": ["objective.detail_weight=100"],
    "x0_detail300": ["objective.detail_weight=300"],
    "x0_detail1000": ["objective.detail_weight=1000"],
    # at 1000 t1n's top band stayed 3x weak (quality_wdm_20261130): t1n's detail bands heavier
    "x0_detail1000_t1n3000": ["objective.detail_weight=1000", "objective.detail_weights={t1n: 3000}"],
    # the shipped recipe's t1n top band is 7x weak at 4449 steps while t2w is within 2x
    # (quality_scale_h200x2_20261201): t1n's detail bands alone heavier, the rest kept at 100
    "x0_detail100_t1n1000": ["objective.detail_weight=100", "objective.detail_weights={t1n: 1000}"],
    "x0_detail100_t1n3000": ["objective.detail_weight=100", "objective.detail_weights={t1n: 3000}"],
    # t1n 3000 shrank the tumours to specks (quality_t1n_weight_h200_20261201): the loss is normalised by the
    # weights' sum, so the label channels lost their share; their detail bands raised with t1n's
    "x0_detail100_t1n3000_labels3000": ["objective.detail_weight=100",
                                        "objective.detail_weights={t1n: 3000, WT: 3000, TC: 3000, ET: 3000}"],
    # the coarse band's share of the loss: with detail 100 the 7 LLL channels (weight 1 each) are 0.25 % of
    # the weighted loss at 19 017 steps (0.0036 x 7 against 0.002 x 49 x 100; the detail bands' error is
    # mostly the data's unpredictable noise), and what stayed wrong with more steps is coarse: tumour
    # presence (share 77 % -> 50 %), CSF, t2w contrast (quality_scale_h200_20261201b). Raise the label
    # channels' LLL to 100 (channel order: LLL of t1n t1c t2w t2f WT TC ET first, then the detail bands)
    "x0_detail100_labels_lll100": ["objective.detail_weight=100",
                                   "objective.channel_weights=" + _masks_lll(100)],
    # shipped since quality_scale_h200_20261201f (tumours, fidelity, contrast, audit all pass) but smoother:
    # t1n's top band 10x low. Heavier detail bands sharpened t1c/t2w/t2f before (1000: within 2x) and lost
    # the tumours; with the masks' coarse band raised with them, the masks keep their share of the loss
    "x0_detail300_labels_lll300": ["objective.detail_weight=300", "objective.channel_weights=" + _masks_lll(300)],
    "x0_detail1000_labels_lll1000": ["objective.detail_weight=1000", "objective.channel_weights=" + _masks_lll(1000)],
    # 300 moved every spectrum, histogram and the tumour sizes toward real but left 97 % of the outside
    # faintly non-zero, RMS 2.4x the shipped model's (quality_scale_h200_20261201g); not the sampler's clamp
    # (haze_cpu_20261201). The latent positions that are background in every modality weigh 10x: with ~60 %
    # of the grid outside the head, ~94 % of the loss's weight, on errors ~5x smaller than the brain's.
    # Measured (quality_scale_h200_20261202): haze RMS -27 %, brains a third smaller, 4 of 16 tumour-free
    "x0_detail300_labels_lll300_bg10": ["objective.detail_weight=300", "objective.channel_weights=" + _masks_lll(300),
                                        "objective.background_weight=10"],
    # the haze grew as the images' own coarse band lost its share of the loss: 4-49 % of outside voxels
    # faintly non-zero before the masks' LLL weight, 88 % with it at 100 (shipped), 97-99 % at 300; the haze
    # is a near-uniform offset (~0.005 of the range), a coarse-band error. The images' LLL at 30 gives it
    # back 30x its share (4 x 30 of ~5320 weight units) without the background weight's shrinking heads
    "x0_detail100_lll30_labels_lll100": ["objective.detail_weight=100",
                                         "objective.channel_weights=" + _masks_lll(100, images=30)],
    # the same on the shipped recipe (skip 0.05): t1c's histogram miss is its normal brain's level, 0.25 too bright on
    # [-1, 1] with its enhancing tumour saturated (t1c_histogram_cpu_20261203), a coarse-band error like the haze
    "x0_detail100_lll30_labels_lll100_skip005": ["objective.detail_weight=100",
                                                 "objective.channel_weights=" + _masks_lll(100, images=30),
                                                 "objective.x0_skip_sigma=0.05"],
    # t1c's level, from the data's side: over the whole brain an enhancing tumour holds t1c's top percentile, so
    # real t1c's normal brain drops 0.5 with one (a coupling the generator half-learns: +0.25-0.31 too bright,
    # quality_scale_h200_20261203c). Percentiles over the brain outside the tumour, mapped to [-1, 0] (room above
    # for the tumours): at 4 mm on the CPU (two seeds) every histogram nearer real on the shipped scale (t1c least),
    # every spectrum within 2x, the texture from blurred to real's detail coherence, the outside 3-6x noisier; most
    # of the histogram gain is the range halved (next variant; scale_outside_tumour_cpu_20261203).
    # Evaluated, as every run, on the brain scale (eval_scale_overrides). In these comments "the shipped scale" is
    # the brain scale: the shipped model's until 2026-12-07, when this variant's seed 2 was shipped
    "x0_detail100_labels_lll100_skip005_scaleout": ["objective.detail_weight=100",
                                                    "objective.channel_weights=" + _masks_lll(100),
                                                    "objective.x0_skip_sigma=0.05", "data.percentile_region=outside_tumour",
                                                    "data.percentile_top=0.0"],
    # the shipped model's grain (every seed of the scale; detail coherence 0.05-0.13 below real's): EDM's skip is
    # set against the data's std, and on this scale the images have half the amplitude, so their 0.05 acts as 0.1
    # does on the brain scale (grain there, quality_scale_h200_20261202b); 0.025 matched to the halved range
    # blurred bands 4-5 (with the images' LLL at 30 and the masks at 0.035, quality_scale_h200_20261204). Between
    # the two, the masks kept at the shipped 0.05 and no other change (two seeds each; compare with the scale's four
    # seeds on case seeds 0..191: 3.49 / 10.90 / 2.51 / 5.53x the floor). img004 read in session 59 (below); img0035
    # not read
    "x0_detail100_labels_lll100_skip005_img0035_scaleout": ["objective.detail_weight=100",
                                                            "objective.channel_weights=" + _masks_lll(100),
                                                            "objective.x0_skip_sigma=0.05",
                                                            "objective.x0_skip_sigmas=" + _images_skip(0.035),
                                                            "data.percentile_region=outside_tumour",
                                                            "data.percentile_top=0.0"],
    "x0_detail100_labels_lll100_skip005_img004_scaleout": ["objective.detail_weight=100",
                                                           "objective.channel_weights=" + _masks_lll(100),
                                                           "objective.x0_skip_sigma=0.05",
                                                           "objective.x0_skip_sigmas=" + _images_skip(0.04),
                                                           "data.percentile_region=outside_tumour",
                                                           "data.percentile_top=0.0"],
    # with the images' coarse band at 30 as well (no stray enhancing spots, Frechet halved at 2 mm, one seed,
    # quality_scale_h200_20261203c): at 4 mm (two seeds) the outside back at the control's, the texture still at
    # real's, every spectrum within 2x; t1c's histogram on the shipped scale no better than the control's
    "x0_detail100_lll30_labels_lll100_skip005_scaleout": ["objective.detail_weight=100",
                                                          "objective.channel_weights=" + _masks_lll(100, images=30),
                                                          "objective.x0_skip_sigma=0.05",
                                                          "data.percentile_region=outside_tumour", "data.percentile_top=0.0"],
    # at 2 mm (one seed, quality_scale_h200_20261203d) every tumour reading passed and the texture turned grainy in
    # every modality: the brain at half the amplitude meets each noise level at a quarter of the signal-to-noise
    # ratio. Halving the time shift's factor (4x the base voxels at shift_power 0.5: odds t/(1-t) halved, 1.53 ->
    # 0.77 on the 40x48x40 latent) gives the halved brain the shipped scale's signal-to-noise at every time
    "x0_detail100_lll30_labels_lll100_skip005_scaleout_shift": ["objective.detail_weight=100",
                                                                "objective.channel_weights=" + _masks_lll(100, images=30),
                                                                "objective.x0_skip_sigma=0.05",
                                                                "data.percentile_region=outside_tumour",
                                                                "data.percentile_top=0.0",
                                                                "objective.shift_base_voxels=131072"],
    # and EDM's skip halved with it: the skip is set by the data's std, so 0.05 on the brain at half the amplitude
    # is 0.1 on the shipped scale, which brought grain at 2 mm (quality_scale_h200_20261202b). With both halved the
    # images' training problem is the shipped scale's up to the net's input magnitude; the tumour masks' channels
    # keep their amplitude, so for them it is less noise and a smaller skip. At 4 mm on the shipped scale's halved
    # range (scale_matched_cpu_20261203): the time shift alone (one seed) kept the grain and made the outside 4x
    # noisier; both halved (two seeds) took the grain away and the tumours with it (3x and 24x smaller than real)
    "x0_detail100_lll30_labels_lll100_skip0025_scaleout_shift": ["objective.detail_weight=100",
                                                                 "objective.channel_weights=" + _masks_lll(100, images=30),
                                                                 "objective.x0_skip_sigma=0.025",
                                                                 "data.percentile_region=outside_tumour",
                                                                 "data.percentile_top=0.0",
                                                                 "objective.shift_base_voxels=131072"],
    # EDM's skip per channel: 0.025 on the images (at half the amplitude), 0.05 kept on the masks (at full). At 4 mm
    # the skip halved for every channel took the grain away and the tumours with it (scale_matched_cpu_20261203);
    # the time shift as shipped (halving it kept the grain and made the outside noisier). At 4 mm on the whole brain's
    # halved range (two seeds, skip_per_channel_cpu_20261203): tumours and texture kept, a haze outside (RMS 0.05; 0.0095
    # with the images' LLL at 30, as here), histograms back at the shipped scale's; at 2 mm trained, not evaluated
    "x0_detail100_lll30_labels_lll100_skipch_scaleout": ["objective.detail_weight=100",
                                                         "objective.channel_weights=" + _masks_lll(100, images=30),
                                                         "objective.x0_skip_sigma=0.05",
                                                         "objective.x0_skip_sigmas=" + _images_skip(0.025),
                                                         "data.percentile_region=outside_tumour",
                                                         "data.percentile_top=0.0"],
    # the masks' skip nearer the images' (0.035) on the outside-the-tumour scale; its 4 mm arm
    # (skip_per_channel_cpu_20261203) took the whole brain's percentiles (next variant). At 2 mm (two seeds,
    # quality_scale_h200_20261204): no grain, no ET away from its label, but spectra blurred (t1n 0.46-0.49,
    # t2w 0.39), and on the shipped scale no histogram gain and no cleaner outside
    "x0_detail100_lll30_labels_lll100_skipch035_scaleout": ["objective.detail_weight=100",
                                                            "objective.channel_weights=" + _masks_lll(100, images=30),
                                                            "objective.x0_skip_sigma=0.035",
                                                            "objective.x0_skip_sigmas=" + _images_skip(0.025),
                                                            "data.percentile_region=outside_tumour",
                                                            "data.percentile_top=0.0"],
    # the 4 mm arm that held on two seeds (scale_brain_top0_skipch035_lll30, skip_per_channel_cpu_20261203: t1c's
    # histogram 0.155 / 0.172 on the shipped scale against the control's 0.25, outside clean, no grain) as it was:
    # the whole brain's percentiles with the range halved. The variant above moved it to the outside-the-tumour
    # percentiles, whose 4 mm arms gained less on the shipped scale; at 2 mm (quality_scale_h200_20261204, two
    # seeds) that one read t1c 0.28 / 0.33 against the shipped model's 0.27, blurred
    "x0_detail100_lll30_labels_lll100_skipch035_top0": ["objective.detail_weight=100",
                                                        "objective.channel_weights=" + _masks_lll(100, images=30),
                                                        "objective.x0_skip_sigma=0.035",
                                                        "objective.x0_skip_sigmas=" + _images_skip(0.025),
                                                        "data.percentile_top=0.0"],
    # the images' skip between two 2 mm readings on the halved range, both on the outside-the-tumour percentiles: one
    # skip of 0.05 (the range's own std ignored) grainy in every modality (quality_scale_h200_20261203d), the images'
    # at 0.025 (matched to the halved range; the masks' 0.035) blurred in bands 4-5 (quality_scale_h200_20261204).
    # Here one skip of 0.035 for every channel, on the whole brain's percentiles (the next lease's scale). At 4 mm
    # the grain showed and the blur did not (the 4 mm control is as blurred), so 4 mm cannot place it
    "x0_detail100_lll30_labels_lll100_skip0035_top0": ["objective.detail_weight=100",
                                                       "objective.channel_weights=" + _masks_lll(100, images=30),
                                                       "objective.x0_skip_sigma=0.035", "data.percentile_top=0.0"],
    # its control: the range halved alone (the whole brain's percentiles to [-1, 0]), a noise schedule shifted
    # toward noise as input scaling does; at 4 mm most of the histogram and spectrum gain, with grain and smaller tumours
    "x0_detail100_labels_lll100_skip005_top0": ["objective.detail_weight=100", "objective.channel_weights=" + _masks_lll(100),
                                                "objective.x0_skip_sigma=0.05", "data.percentile_top=0.0"],
    # the haze again, from the other side: the x0 net's zero padding and zero-initialised output say "0",
    # while the background is -1 in the coarse band; with latent.zero_background it is 0 in every channel
    # (the haze rises toward the grid's edges, where the padding is). At 4 mm on the CPU (1200 steps,
    # denoise_curve_cpu_20261202/small_4mm/zerobg) it cleaned the outside a little (RMS 0.013 -> 0.011) and
    # saturated the brains (t1n histogram W1 0.10 -> 0.29): the lowest priority of the haze variants
    "x0_detail100_labels_lll100_zerobg": ["objective.detail_weight=100", "objective.channel_weights=" + _masks_lll(100),
                                          "latent.zero_background=true"],
    # the texture: the recipe's logit-normal times, shifted for the 40x48x40 latent, train 0.5 % of steps
    # below t = 0.1 and none below 0.05, where the net's x0 estimate keeps only 0.8 of the detail power
    # its nearly clean input holds (benchmarks/results/denoise_curve_cpu_20261202); uniform times train
    # 6.8 % below 0.1, a wider logit-normal (std 1.5) 4 %
    "x0_detail100_labels_lll100_tuniform": ["objective.detail_weight=100",
                                            "objective.channel_weights=" + _masks_lll(100),
                                            "objective.time_sampling=uniform"],
    "x0_detail100_labels_lll100_tstd15": ["objective.detail_weight=100", "objective.channel_weights=" + _masks_lll(100),
                                          "objective.logit_std=1.5"],
    # or give the net the pass-through it lacks: EDM's skip at the detail bands' own scale (their std over the
    # grid ~0.1; 0.14-0.18 inside the brain): c_skip is ~1 below t = 0.02, 0.5 at t = 0.1 and < 0.08 above
    # t = 0.3, so the high noise levels keep the plain x0 output and its clean background
    "x0_detail100_labels_lll100_skip01": ["objective.detail_weight=100", "objective.channel_weights=" + _masks_lll(100),
                                          "objective.x0_skip_sigma=0.1"],
    # at 4 mm on the CPU (denoise_curve_cpu_20261202/small_4mm) s = 0.1 met the spectrum goal with grain and a
    # background RMS of 0.026-0.030; s = 0.05 gave the cleanest background (0.002) and little texture.
    # At 2 mm (quality_scale_h200_20261202b) 0.1 was grain again (t1c's top band 4.8x real) and 0.05 brought
    # t1n/t2w/t2f's spectra within 2x: shipped since as anatomy-2mm, with a faint mottle
    "x0_detail100_labels_lll100_skip005": ["objective.detail_weight=100", "objective.channel_weights=" + _masks_lll(100),
                                           "objective.x0_skip_sigma=0.05"],
    # the shipped recipe stopped at its steps (4901), beside the uncapped recipe at the same seed (the same start,
    # data order and generation noise): the under-dispersion against training length alone. At 4 mm 3x the steps
    # took the brain sizes' spread from 0.27 / 0.31 to 0.60 / 0.40 of real's (spread_norm_cpu_20261205, two seeds)
    "x0_detail100_labels_lll100_skip005_4900": ["objective.detail_weight=100",
                                                "objective.channel_weights=" + _masks_lll(100),
                                                "objective.x0_skip_sigma=0.05", "train.max_steps=4900"],
    # the skip model's x0 estimate keeps 1.2-1.3x the true detail power below t = 0.02 (the mottle?), where no
    # training time falls (denoise_curve_cpu_20261202/skip005_h200): a wider logit-normal trains there
    "x0_detail100_labels_lll100_skip005_tstd15": ["objective.detail_weight=100",
                                                  "objective.channel_weights=" + _masks_lll(100),
                                                  "objective.x0_skip_sigma=0.05", "objective.logit_std=1.5"],
    # issue 16's "time shift on/off" row: the recipe shifts training times and the sampling grid by 1.53 for
    # its 40x48x40 latent (SD3's resolution shift); off, both are the plain logit-normal and uniform grid
    "x0_detail100_labels_lll100_skip005_noshift": ["objective.detail_weight=100",
                                                   "objective.channel_weights=" + _masks_lll(100),
                                                   "objective.x0_skip_sigma=0.05", "objective.time_shift=false"],
    # the shipped model is under-dispersed: its brains' sizes and per-case levels vary half as much as real
    # (frechet_gap_cpu_20261205; not the ODE solver's). EMA at 0.999 averages the weights over ~1000 of its ~5-9k
    # steps: a shorter average (~100 steps) says whether the averaging narrows the draws
    "x0_detail100_labels_lll100_skip005_ema099": ["objective.detail_weight=100",
                                                  "objective.channel_weights=" + _masks_lll(100),
                                                  "objective.x0_skip_sigma=0.05", "train.ema.max_decay=0.99"],
    # four seeds of the shipped recipe read 4.9x-20.4x the Frechet floor with losses within 3 % of each other
    # (seedpick4_h100_20261207): its rate stays at 2e-4 to the last step (lr_schedule constant, for runs that end
    # on a clock), so the ~550-step EMA averages weights still moving. A cosine decay to 0 at the shipped length
    # (4901 steps: the schedule needs the step count, so a run must end on it, not on --minutes)
    "x0_detail100_labels_lll100_skip005_cosine": ["objective.detail_weight=100",
                                                  "objective.channel_weights=" + _masks_lll(100),
                                                  "objective.x0_skip_sigma=0.05", "train.lr_schedule=cosine",
                                                  "train.max_steps=4901"],
    # the shipped net loses t1n's and t2w's per-case levels even at t = 0.1 (x0_spread_cpu_20261205: r 0.60 / 0.92,
    # slope 0.46 / 0.43); at 4 mm GroupNorm's per-case spatial statistics are the suspect: pixel norm (per voxel,
    # no spatial reduction; issue 15's fast setting) tracked them where GroupNorm did not (t2w r 0.81 against
    # -0.17 at t = 0.1; small_4mm/, one seed), and the images' LLL at 30 did not
    "x0_detail100_labels_lll100_skip005_pixelnorm": ["objective.detail_weight=100",
                                                     "objective.channel_weights=" + _masks_lll(100),
                                                     "objective.x0_skip_sigma=0.05", "net.norm=pixel"],
    # the CSF-like shell is the brain edge's width: the generated edge is a ramp about a voxel wider than real,
    # made below t = 0.3, inward with the shipped model, outward with logit std 1.5 (rim_denoise_cpu_20261202,
    # session 22). The latent positions around the boundary weigh 3x: 21 % of the 40x48x40 grid on the anatomy
    # data (background outside the band 59 %, brain inside it 19 %), so 45 % of the loss's spatial weight
    # (rim_denoise_cpu_20261202/edge_share.json)
    "x0_detail100_labels_lll100_skip005_edge3": ["objective.detail_weight=100",
                                                 "objective.channel_weights=" + _masks_lll(100),
                                                 "objective.x0_skip_sigma=0.05", "objective.edge_weight=3"],
    # the shipped model's t1c enhancing tumour is too dark against its normal brain (ET - normal brain median
    # +0.94 against real's +1.21 on the outside-the-tumour scale: tumour_contrast_cpu_20261204, session 33); the
    # tumour and its neighbouring latent positions (a few % of the grid) weigh 5x in the loss
    "x0_detail100_labels_lll100_skip005_tumour5": ["objective.detail_weight=100",
                                                   "objective.channel_weights=" + _masks_lll(100),
                                                   "objective.x0_skip_sigma=0.05", "objective.tumour_weight=5"],
    # ... which at 2 mm drew a tumour in 98 % of cases and several a case (quality_scale_h200_20261204d): a weight
    # from the label biases the optimum toward tumours. The map read off the net's noisy input instead (a
    # function of x_t: no bias of the optimum) and only at noise levels up to 1 (sigma = t / (1 - t)); at 4 mm it
    # kept t1c's ET contrast gain and still drew extra tumours in 6 of 32 cases (tumour_weight_cpu_20261204)
    "x0_detail100_labels_lll100_skip005_tumour5_input": ["objective.detail_weight=100",
                                                         "objective.channel_weights=" + _masks_lll(100),
                                                         "objective.x0_skip_sigma=0.05", "objective.tumour_weight=5",
                                                         "objective.tumour_map=input",
                                                         "objective.spatial_weight_max_sigma=1.0"],
    # ... and on the images' channels alone: the masks, which place the tumours, learnt without the weight
    "x0_detail100_labels_lll100_skip005_tumour5_input_images": ["objective.detail_weight=100",
                                                                "objective.channel_weights=" + _masks_lll(100),
                                                                "objective.x0_skip_sigma=0.05",
                                                                "objective.tumour_weight=5",
                                                                "objective.tumour_map=input",
                                                                "objective.spatial_weight_max_sigma=1.0",
                                                                "objective.tumour_weight_channels=images"],
    # the t1c miss is the enhancing tumour's contrast against the normal brain, drawn too low in a model that
    # draws the labels with the images (et_where_cpu_20261204: with ET the generated normal brain sits at the level
    # of a case without one). Med-DDPM's split instead: the WT/TC/ET masks in (channel concatenation), the four
    # modalities out, so the images are drawn for a tumour known from the first step. Generated for the first
    # training cases' masks (training_masks), or with --mask-source for another run's generated labels (the
    # two-stage recipe: generated_masks)
    "x0_detail100_skip005_maskcond": [*MASK_CONDITIONED,
                                      "objective.detail_weight=100", "objective.x0_skip_sigma=0.05"],
    # as the second of two stages it fixed t1c's ET (both seeds) and drew the images a little blurrier than the joint
    # model (detail coherence +0.02-0.04, t1n's top band 0.41-0.44 of real) with t2w/t2f's ET too bright: blur
    # would smear the bright edema into the thin ET rim (quality_scale_h200_20261204f). The detail bands weigh 3x
    # more: in a joint model a larger detail weight shrank the tumours, which a mask-conditioned model is given
    "x0_detail300_skip005_maskcond": [*MASK_CONDITIONED,
                                      "objective.detail_weight=300", "objective.x0_skip_sigma=0.05"],
    # detail 300 did not remove the t2f / t2w overshoot (+0.17 against +0.18 on real masks, paired), nor does
    # blur explain it (a Gaussian of the model's detail-coherence shift moves real ETs by ~0.01:
    # quality_scale_h200_20261204g, blur_contrast_cpu_20261204): a region's level is the coarse band's, which
    # weighs 1 against the detail bands' 100 here; in the joint model the images' LLL at 30 halved Frechet and
    # removed the stray enhancing spots (quality_scale_h200_20261203c)
    "x0_detail100_lll30_skip005_maskcond": [*MASK_CONDITIONED,
                                            "objective.detail_weight=100", "objective.x0_skip_sigma=0.05",
                                            "objective.channel_weights=" + _masks_lll(None, images=30)],
    # the second stage's region levels on the shipped scale: its t1c histogram W1 0.22 there against 0.03 on the
    # outside-the-tumour scale, t2f's per-case level spread 1.5x real's, the T2 edema +0.13-0.17 too bright
    # (representation_row_h100_20261206b). The shipped scale's percentiles include the tumour, so each case's normal
    # brain level depends on its tumour's brightness: a coupling the net must draw. Given the masks, the second
    # stage can learn on the scale with the normal brain fixed (percentiles outside the tumour, normal brain to
    # [-1, 0], the tumours above it) and evaluate puts its cases through the shipped scale as it does real ones, so
    # the coupling was expected to come from the arithmetic. The joint model on that scale turned grainy at 2 mm with the skip at
    # 0.05 on the halved amplitude (quality_scale_h200_20261203d); the skip halved with it (0.025), which at 4 mm
    # took the joint model's tumours away -- a second stage is given its tumours. At 4 mm on the CPU (two seeds,
    # maskcond_scaleout_4mm_cpu_20261206): t1c's ET much nearer real (a miss the 2 mm stage lacks), the ETs' bright
    # ends in t1n and t2f brighter, t1n's histogram worse, the level coupling not back: not first in line for a lease
    "x0_detail100_skip0025_maskcond_scaleout": [*MASK_CONDITIONED, "objective.detail_weight=100",
                                                "objective.x0_skip_sigma=0.025",
                                                "data.percentile_region=outside_tumour", "data.percentile_top=0.0"],
    # uncapped (~9500 steps) on noise independent of the first stage's, the second stage read Frechet 21.6x where
    # session 37's 4900 steps on the first stage's noise read 12.3x (quality_scale_h200_20261205): the same recipe
    # stopped at 4900 steps, beside the uncapped one with the same seed (the same generation noise), says which of
    # the two changes moved it
    "x0_detail100_skip005_maskcond_4900": [*MASK_CONDITIONED, "objective.detail_weight=100",
                                           "objective.x0_skip_sigma=0.05", "train.max_steps=4900"],
    # most of the CSF excess is a band of faint voxels at the generated brain's edge (mean intensity < 0.1-0.15,
    # ~3 % of the brain) that real brains lack: cut at tau 0.15, the shipped model's CSF reads 0.063 against
    # real's 0.057 cut the same way (mask_cut_cpu_20261202). The brain mask generated as an eighth channel and
    # every case cut to it, as skull stripping cuts real data. Its coarse band at weight 1: at 100 (as the
    # tumour masks') the small 4 mm recipe drew tumours in 8 of 16 cases, 8x smaller; at 1 in 11 of 16, sizes
    # closer to real than without the channel, the faint edge band the same 6x thinner (mask_cut_cpu_20261202/
    # small_4mm_brain, one seed each)
    "x0_detail100_labels_lll100_skip005_brain": ["conditioning.generate_brain=true", "objective.detail_weight=100",
                                                 "objective.channel_weights=" + _masks_lll(100, brain=1),
                                                 "objective.x0_skip_sigma=0.05"],
    # the brain channel cost tumours at 2 mm (seed 0: 59 % of cases against real 85 %) and at 4 mm (20-21 of 32
    # against 30 without it); the tumour masks' coarse band at 300 beside it drew 24 of 32 at 4 mm
    # (brain_detail_cpu_20261202, one seed each)
    "x0_detail100_labels_lll300_skip005_brain": ["conditioning.generate_brain=true", "objective.detail_weight=100",
                                                 "objective.channel_weights=" + _masks_lll(300, brain=1),
                                                 "objective.x0_skip_sigma=0.05"],
    # issue 16's "wavelet vs pixel space at equal budget" row: the same recipe on the images themselves
    # (latent.levels 0, the identity transform: 7 channels at 80x96x80 instead of 56 at 40x48x40, so the same
    # net sees 8x the voxels per step and its bottleneck sits at 1/4 of the image, not 1/8; no detail bands to
    # weigh, the masks' channels at 100 as the recipe's masks' LLL; the time shift follows the 8x voxel count)
    "x0_pixel_labels100_skip005": ["latent.levels=0", "objective.channel_weights=[1,1,1,1,100,100,100]",
                                   "objective.x0_skip_sigma=0.05"],
    # the 19 017-step run began to copy its 285 training cases (2 of 16 flagged): left-right flips double
    # what it sees; train.data_on_device replays them on the GPU since session 14 (the audit matches
    # mirrored copies too, so a flipped copy is still caught)
    "x0_detail100_flip": ["objective.detail_weight=100", "data.flip_prob=0.5"],
    # (every channel's LLL at 10 would be detail_weight 10: the loss is normalised by the weights' sum,
    # and 10 gave a weaker spectrum, quality_texture_20261130; the labels' coarse band alone is untested)
    # at 1000 the generator drew too few and too small tumours: the label channels' detail bands (edges
    # of piecewise-constant masks) left unweighted, so they stop crowding out the coarse band's content
    "x0_detail1000_labels1": ["objective.detail_weight=1000", "objective.detail_weights={WT: 1, TC: 1, ET: 1}"],
    # issue 15's fast settings on the shipped recipe: per-voxel RMS norm (no spatial statistics: 1.3x
    # faster compiled) and torch.compile; ships if it costs no quality at the same minutes
    "x0_detail100_pixel": ["objective.detail_weight=100", "net.norm=pixel", "train.compile=true"],
    # near the data the x0 loss (velocity loss x t^2) hardly trains: weight small t up as well
    "x0_detail100_tpow1": ["objective.detail_weight=100", "objective.x0_time_power=1"],
    # per-sub-band unit variance: the inputs and the loss weight every band alike (~1000x detail)
    "x0_stats_on": ["latent.fit_stats=true"],
    "velocity": ["objective.flow_target=velocity"],
    # issue 16's baseline to beat: WDM-3D's objective and sampler (x0 DDPM, linear schedule, 1000
    # ancestral steps) on this net, data and budget; its ancestral noise might keep the texture the
    # flow runs' top bands lack (flow_target back to its default: the x0 arm sets it, DDPM refuses it)
    "wdm_ddpm_x0": ["objective.flow_target=velocity", *ARMS["wdm_ddpm_x0"]],
}
# Both stages within issue 16's 25 MB of shipped weights (the tracked feature net's 1.33 MB shares it): the joint
# recipe as the first stage at [32, 64, 96] (8.9 MB in bf16; only its labels are used) and the second stage at
# [32, 64, 128] (13.7 MB): 22.7 MB together against the shipped joint model's 23.2 MB alone. Widths are multiples
# of net.norm_groups (16); test_the_small_two_stage_pair_fits_the_weight_budget sizes them. Train the pair in one
# job with --mask-source <the first's run> (generated_masks waits for its cases).
SMALL_PAIR = {"x0_detail100_labels_lll100_skip005_w96": ("x0_detail100_labels_lll100_skip005", [32, 64, 96]),
              "x0_detail100_skip005_maskcond_w128": ("x0_detail100_skip005_maskcond", [32, 64, 128])}
VARIANTS.update({name: [*VARIANTS[base], f"net.channels={list(widths)}".replace(" ", "")]
                 for name, (base, widths) in SMALL_PAIR.items()})
# The shift arms. img004 (two seeds, quality_skip004_h100_20261207: consistent, not resolved) took the grain away
# in t1n / t1c / t2f and halved it in t2w, and left the middle bands (4-5, -0.33 to -0.46; the scale's -0.26 to
# -0.42) as low: the spectrum's miss is not the grain's. The middle bands fell with every halved range read at 2 mm
# (the whole brain's and this one), and doubling the time shift's odds on the brain scale blurred every modality
# (scale_matched_cpu_20261203, 4 mm): the halved range meets each time at a quarter of the signal-to-noise ratio,
# as a doubled shift would. These arms halve the shift's factor (1.53 -> 0.77 on the 40x48x40 latent), giving the
# images the brain scale's signal-to-noise at every time (the masks, at full amplitude, get less noise): on the
# shipped skips, and with img004's. Not read at 2 mm (the older _lll30_..._scaleout_shift above adds the images'
# LLL at 30 too); the 4 mm proxy cannot read the middle bands (the halved range's spectrum was nearer real there)
# Read (sessions 61-62, quality_shift_h100_20261207 two seeds, quality_img004shift_h100_20261207 one): the middle
# bands rise, the tumours shrink and lose their cores on all three runs, and the one with img004's skips
# reads Frechet 48.7x the floor: the halved shift is dropped (a shift on the images alone needs a time per
# channel group, not built)
VARIANTS.update({f"{base}_shift": [*VARIANTS[base], "objective.shift_base_voxels=131072"]
                 for base in ("x0_detail100_labels_lll100_skip005_scaleout",
                              "x0_detail100_labels_lll100_skip005_img004_scaleout")})
# The necrotic core is drawn where training is thinnest (session 63, core_time_cpu_20261207): real cases noised
# to t <= 0.95 and sampled keep their core / rim ratio (median change -0.01..-0.03, the top of the range pulled
# toward 0.6); fresh draws from t = 1 make the shipped model's small cores (0.46 against the data's 0.58,
# core_radius_cpu_20261207). So most of the core's edge is set in the first steps, 1 -> 0.95, which the recipe's
# times (logit-normal, shift 1.53) train with 0.59 % of its samples (0.04 % above 0.978, the first step's end);
# the halved shift's three runs (0.07 % above 0.95) lost the core in 15-38 % of their tumours. These arms train
# more there with nothing else changed: the logit-normal's mean at 0.5 (2.2 % above 0.95; 0.09 % below t = 0.1
# against the recipe's 0.44 %, where the skip carries the detail) and its std at 1.5 (4.6 % above 0.95; 4 % below
# 0.1: std 1.5 on the brain scale brought speckle, quality_scale_h200_20261202d). Not read: in 150-step CPU
# fine-tunes the draw of cases and noise moves the median core ratio (0.43-0.54 over three control draws) more than
# tmean05's time law does (0.50); tstd15's was not tried (core_finetune_cpu_20261207, core_finetune2_cpu_20261208)
VARIANTS.update({f"x0_detail100_labels_lll100_skip005_scaleout_{name}": [
    *VARIANTS["x0_detail100_labels_lll100_skip005_scaleout"], key] for name, key in (
        ("tmean05", "objective.logit_mean=0.5"), ("tstd15", "objective.logit_std=1.5"))})
# issue 16's "VAE latents at equal budget" row, on the mask-conditioned second stage (the recipe's image model):
# the VAE encodes images only, so a VAE arm is mask-conditioned, read beside x0_detail100_skip005_maskcond (and
# a pixel-space mask-conditioned arm, below) in the same job. The budget is the run's --minutes in all: the VAE
# trains first for VAE_STAGES' share of them (configs/<run>_vae.yaml, stage vae, images only), its codec is
# exported to codecs/<run> with its latent statistics, then the diffusion trains on its latents for the
# rest. configs/vae.yaml's autoencoder (4 latent channels at 1/4 a side: 80x96x80 -> 20x24x20x4, 48x fewer
# numbers; the wavelet latent is lossless, 40x48x40x32), no perceptual or adversarial loss (no weights may be
# downloaded; a GAN needs more than minutes). The latent net keeps the shipped widths: it sees 1/8 of the
# wavelet arm's positions, so it takes more steps in the same minutes.
VAE_STAGES: dict[str, float] = {"vae_maskcond": 0.4}  # variant -> the share of --minutes the VAE trains
VAE_KEYS = ["stage=vae", "data.label_mode=none", "conditioning.generate_labels=false", "vae.latent_channels=4",
            "vae.downsample=4", "vae.channels=[32,64,128]", "vae.num_res_blocks=1", "vae.norm=voxel",
            "vae.kl_weight=1.0e-6", "vae.adversarial=false", "vae.perceptual_weights=null", "vae.stats_batches=16",
            "train.lr=1.0e-4", "train.val_every=0"]
VARIANTS.update({
    # (no x0 clamp: it decodes and re-encodes through the VAE at every step, lossy and slow; configs/vae_ldm.yaml)
    "vae_maskcond": [*MASK_CONDITIONED, "latent.type=pretrained",
                     "latent.levels=1", "objective.x0_skip_sigma=0.05", "sampler.clip_x0=false"],
    # the pixel-space arm of the same three-way row, mask-conditioned: the 4 images at 80x96x80
    "x0_pixel_skip005_maskcond": [*MASK_CONDITIONED, "latent.levels=0",
                                  "objective.x0_skip_sigma=0.05"],
})


def vae_config_path(out: Path, run: str) -> Path:
    """A VAE arm's first stage (the autoencoder's own training config)."""
    return out / "configs" / f"{run}_vae.yaml"


def vae_codec_dir(out: Path, run: str) -> Path:
    """Its exported codec: not under models/, where every folder is a run's diffusion model (device_session's
    paired task reads models/*maskcond*)."""
    return out / "codecs" / run


# the evaluation's phases in order: name -> evaluate --tasks. Each phase's report lands in its own
# folder (eval_dir) before the next starts. Memorisation (image space: no net) is its own phase, so
# a shipping decision has it even when the feature metrics run past their cap (the four image
# phases of the 2026-11-30 H200 run did, with memorisation inside them); tissue goes last because it
# trains a segmenter and is the one that ran longest (2 x H200: still going after 17 min).
# fidelity: the feature net (a real-trained segmenter) on the generated images against their own labels
# and on the real held-out cases (issue 16: >= 0.85x for WT and TC); cheap, as nothing trains in it.
# utility (opt-in, not in the default phases): segmenters trained on the generated cases, size-matched
# real ones and real + generated, tested on the real held-out fold (issue 16: synthetic >= 0.9x real at
# equal N, real + synthetic >= real); it trains 3+ segmenters per run (the real one is the shared net).
EVAL_PHASES: dict[str, str] = {"memorisation": "memorisation", "fidelity": "fidelity", "image": "image",
                               "tissue": "tissue", "utility": "utility"}
DEFAULT_PHASES = ["realism", "memorisation", "fidelity", "image", "tissue"]
# the net a phase's evaluations share (OUT/<name>), trained once beside the runs: phase -> name
SHARED_NETS: dict[str, str] = {"fidelity": "feature_net", "image": "feature_net", "tissue": "tissue_net",
                               "utility": "feature_net"}
# keys this script sets per seed: a --set of one of them would silently break the comparison
OWNED = ("seed", "name", "output_dir", "data.manifest", "data.root", "data.fold", "train.max_minutes")


def run_names(variants: Sequence[str], seeds: int,
              pairs: Sequence[tuple[str, int]] | None = None) -> dict[str, tuple[str, int]]:
    """Every training run: name -> (variant, seed): each variant from seed 0 to seeds - 1, or the
    (variant, seed) pairs of --runs where given (e.g. two more seeds of one recipe beside one of
    another). The shipped recipe alone keeps its runs' old names (seed<s>: the folder
    pack_pretrained.py packs is models/seed0); otherwise <variant>_seed<s>."""
    pairs = list(pairs) if pairs else [(v, s) for v in variants for s in range(seeds)]
    plain = {v for v, _ in pairs} == {"x0"}
    return {(f"seed{s}" if plain else f"{v}_seed{s}"): (v, s) for v, s in pairs}


def parse_run(text: str) -> tuple[str, int]:
    """--runs VARIANT:SEED -> (variant, seed); argparse makes a refusal one line, exit 2."""
    variant, sep, seed = text.rpartition(":")
    if not sep or variant not in VARIANTS or not seed.isdigit():
        raise argparse.ArgumentTypeError(f"expected VARIANT:SEED with VARIANT one of quality_scale's VARIANTS and SEED >= 0, got {text!r}")
    return variant, int(seed)


def runs_of(args: argparse.Namespace) -> dict[str, tuple[str, int]]:
    """This invocation's runs (run_names of its --variants and --seeds, or of its --runs)."""
    return run_names(args.variants, args.seeds, args.runs)


def trained_runs(record: dict[str, Any]) -> list[str]:
    """The runs trained here, in order: with --model the first run is the given model (a control trained in
    another job, with its own budget and card sharing), which only generated."""
    return list(record["runs"])[1 if record.get("model") else 0:]


def summarised_runs(record: dict[str, Any], variant: str) -> list[str]:
    """The runs of ``variant`` its mean over seeds takes: the trained ones."""
    return [run for run in trained_runs(record) if record["runs"][run]["variant"] == variant]


def summarise_over_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean over seeds with a 95 % Student t interval (mean +- t(0.975, n-1) s / sqrt(n), s with
    ddof=1), min and max; non-finite values (a failed seed) are left out and counted in ``n``."""
    from scipy import stats

    x = np.array([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if x.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "t95": None}
    out: dict[str, Any] = {"n": int(x.size), "mean": float(x.mean()), "min": float(x.min()), "max": float(x.max())}
    if x.size < 2:
        return {**out, "std": None, "t95": None}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, x.size - 1)) * std / math.sqrt(x.size)
    return {**out, "std": std, "t95": [out["mean"] - half, out["mean"] + half]}


def eval_dir(out: Path, run: str, phase: str) -> Path:
    """One run's report folder of one evaluation phase: OUT/eval/<run> (image) or OUT/eval/<run>_<phase>."""
    return out / "eval" / (run if phase == "image" else f"{run}_{phase}")


# the realism phase's second reading (normal_brain_scale_overrides): its folder and its results' key in eval_metrics
NORMAL_BRAIN_REALISM = "realism_outside_tumour"


def phase_reports(out: Path, run: str) -> dict[str, dict[str, Any]]:
    """The report of every evaluation phase of ``run``: report.json, or the finished tasks' report.partial.json
    of one stopped at its cap (a phase with neither is left out); the realism phase's report first."""
    found = {}
    quick = out / "realism" / f"{run}.json"
    if quick.is_file():  # the in-process realism phase: the image phase's realism, where it finished, replaces it
        found["realism"] = json.loads(quick.read_text())
    second = out / NORMAL_BRAIN_REALISM / f"{run}.json"
    if second.is_file():  # its reading on the outside-the-tumour scale, under its own key
        found[NORMAL_BRAIN_REALISM] = {"results": {NORMAL_BRAIN_REALISM: json.loads(second.read_text())["results"]["realism"]}}
    for phase in EVAL_PHASES:
        # a phase stopped at its cap leaves the tasks it finished in report.partial.json
        for name in ("report.json", "report.partial.json"):
            path = eval_dir(out, run, phase) / name
            if path.is_file():
                found[phase] = json.loads(path.read_text())
                break
    return found


def realism_source(reports: dict[str, dict[str, Any]]) -> str | None:
    """Which real side a run's realism rows read (``phase_reports``' reports): the image phase's (every
    training-fold case) where it finished, else the realism phase's (``--realism-cases``); None without either.
    Rows of the two do not compare: ``arm_compare`` refuses a table that mixes them."""
    if "realism" in (reports.get("image") or {}).get("results", {}):
        return "image"
    return "realism" if "realism" in reports else None


def realism_bands(reports: dict[str, dict[str, Any]]) -> dict[str, list[float]]:
    """The per-band log10 spectrum ratios per modality from the report whose realism rows ``eval_metrics`` reads
    (:func:`realism_source`), so the bands and the rows read one real side; {} without a spectrum."""
    source = realism_source(reports)
    ps = (reports.get(source) or {}).get("results", {}).get("realism", {}).get("checks", {}).get("power_spectrum", {})
    return {mod: r["log10_ratio_per_band"] for mod, r in ps.get("per_modality", {}).items()}


def _median_vs_real(check: dict[str, Any]) -> float:
    """A W1 check's synthetic median - real median (report.json writes a nan as "nan")."""
    return float(check["synthetic_median"]) - float(check["real_median"])


def eval_metrics(*reports: dict[str, Any]) -> dict[str, float]:
    """The scalar scores the seeds are compared on, from one seed's ``medidiff evaluate`` report.json
    files (one per evaluation phase: each task's results are in the report of the phase that ran it)."""
    from medidiff.eval.utility import fidelity_ratios

    res: dict[str, Any] = {}
    for report in reports:
        res.update(report["results"])
    m: dict[str, float] = {}
    realism = res.get("realism", {}).get("checks", {})
    if "background" in realism:
        m["eval_background_rms"] = realism["background"]["synthetic_rms"]
        m["eval_background_nonzero_fraction"] = realism["background"]["synthetic_fraction_nonzero"]
    for mod, r in realism.get("power_spectrum", {}).get("per_modality", {}).items():
        m[f"spectrum_max_abs_log10_{mod}"] = r["max_abs_log10_ratio"]
        m[f"spectrum_floor_{mod}"] = r["floor"]
        # the top band is where the shipped model failed (too smooth): its power ratio, synthetic / real
        m[f"spectrum_top_band_ratio_{mod}"] = 10.0 ** r["log10_ratio_per_band"][-1]
    for mod, r in realism.get("detail_coherence", {}).get("per_modality", {}).items():  # from 2026-12-02
        m[f"coherence_vs_real_{mod}"] = r["difference"]  # < 0: grainier than real, > 0: smoother
        m[f"coherence_floor_{mod}"] = r["floor"]
    for mod, r in realism.get("intensity_histogram", {}).get("per_modality", {}).items():
        m[f"histogram_w1_{mod}"] = r["wasserstein"]
        m[f"histogram_w1_floor_{mod}"] = r["floor"]
    normal = res.get(NORMAL_BRAIN_REALISM, {}).get("checks", {})
    for mod, r in normal.get("intensity_histogram", {}).get("per_modality", {}).items():
        m[f"histogram_w1_outside_tumour_{mod}"] = r["wasserstein"]
        m[f"histogram_w1_outside_tumour_floor_{mod}"] = r["floor"]
    # the t1c histogram's parts (from session 33): the ET's contrast against the normal brain where the scale is
    # the normal brain's (on the shipped scale the ET sits at the clip), and the stray bright voxels on the shipped
    # scale (they set its per-case percentiles)
    # medians against real's: report.json writes a nan (a set with no ET in a modality) as "nan", hence float()
    # et_upper: reports since session 35 (the ET's 90th percentile); ed_contrast: since session 37 (the edema);
    # ncr_contrast: since session 38 (the core: the 4 mm second stage drew t2w's 0.45 too dark, maskcond_4mm_cpu_20261205)
    for key in ("et_contrast", "et_upper", "ed_contrast", "ncr_contrast"):
        for mod, r in normal.get("tumour_contrast", {}).get(key, {}).items():
            m[f"{key}_vs_real_{mod}"] = _median_vs_real(r)
    contrast = realism.get("tumour_contrast", {})
    for mod, r in contrast.get("top_in_tumour", {}).items():
        m[f"top_in_tumour_vs_real_{mod}"] = _median_vs_real(r)
    if "pass" in contrast:
        m["tumour_contrast_pass"] = float(bool(contrast["pass"]))
    dist = res.get("image", {}).get("distances", {})
    syn, floor = (dist.get(k, {}).get("3d", {}).get("frechet") for k in ("synthetic_vs_real_train", "real_heldout_vs_real_train"))
    if syn is not None and floor is not None:
        m.update(frechet_3d=syn, frechet_3d_floor=floor, frechet_over_floor=syn / floor if floor > 0 else math.inf)
        row = dist["synthetic_vs_real_train"]["3d"]
        if "frechet_se" in row:  # reports since session 39: one draw of the generated cases is noisy (36 -> 63)
            m.update(frechet_3d_low=row["frechet_interval"][0], frechet_3d_high=row["frechet_interval"][1],
                     frechet_3d_se=row["frechet_se"])
            if "jackknife_cases" in row:  # (frechet_difference compares figures read at one count only)
                m["frechet_3d_cases"] = row["jackknife_cases"]
    prdc = res.get("image", {}).get("prdc", {})  # reports since session 40: what Frechet mixes, split
    for key in ("precision", "recall", "density", "coverage"):
        if key in prdc.get("synthetic_vs_real_train", {}):
            m[f"prdc_{key}"] = prdc["synthetic_vs_real_train"][key]
        if key in prdc.get("real_heldout_vs_real_train", {}):
            m[f"prdc_{key}_floor"] = prdc["real_heldout_vs_real_train"][key]
    if "pass" in res.get("image", {}).get("prdc_reading", {}):
        m["prdc_pass"] = float(res["image"]["prdc_reading"]["pass"])
    reading = res.get("image", {}).get("frechet_readings", {}).get("3d", {})
    if "within_floor_range" in reading:  # 1: some real subset of this size scored as far (no verdict)
        m["frechet_3d_within_floor_range"] = reading["within_floor_range"]
    fid = res.get("fidelity", {})
    # the goal's ratio on the cases with the region, also from reports written before it was (their split exists
    # since 2026-11-30; a report without it gives no ratio)
    if "by_tumour_presence" in fid.get("real_heldout", {}):
        for region, ratio in fidelity_ratios(fid, fid["real_heldout"])["dice_ratio_to_real"].items():
            if region in ("WT", "TC"):  # the goal's regions; ET is in report.json
                m[f"fidelity_ratio_{region}"] = ratio
    split = res.get("fidelity", {}).get("by_tumour_presence")
    if split:  # the WT ratio mixes tumour-free cases (0 on any false voxel) with the others
        m["fidelity_wt_dice_with_tumour"] = split["with_region"]["WT"]["dice_mean"]
        m["fidelity_tumour_free_cases"] = split["without_region"]["WT"]["cases"]
    unlabelled = fid.get("unlabelled_tumour")
    if unlabelled:  # reports written since session 27 (2026-12-03)
        m["unlabelled_tumour_wt_share"] = unlabelled["regions"]["WT"]["share_flagged"]["synthetic"]
        m["unlabelled_tumour_pass"] = float(unlabelled["pass"])
    brain = realism.get("brain_size")
    if brain:  # reports before 2026-12-02 lack it
        m["brain_size_w1"], m["brain_size_floor"] = brain["wasserstein"], brain["floor"]
        m["brain_size_log10_vs_real"] = brain["synthetic_median"] - brain["real_median"]
    spread = realism.get("spread_across_cases")
    if spread:  # reports since session 41: a generator narrowed toward the typical case (frechet_gap_cpu_20261205)
        for prop, v in [("all", spread), *spread["per_property"].items()]:
            m[f"spread_{prop}"], m[f"spread_{prop}_floor"] = v["ratio"], v["floor_median"]
        if spread["pass"] is not None:
            m["spread_pass"] = float(spread["pass"])
    tumours = realism.get("tumour_statistics")
    if tumours:
        m["tumour_share"] = tumours["share_with_tumour"]["synthetic"]
        m["tumour_share_real"] = tumours["share_with_tumour"]["real"]
        m["tumour_size_w1"] = tumours["size_log10_wt_fraction"]["wasserstein"]
        et_share = tumours.get("et_share_of_wt_log10")  # reports since session 35 (2026-12-04)
        if et_share:
            m["et_share_of_wt_vs_real"] = _median_vs_real(et_share)
        several = tumours.get("share_with_several_tumours", {})  # reports since session 35 (2026-12-04)
        if several:
            m["tumour_several_share"] = several["synthetic"]
            m["tumour_several_share_real"] = several["real"]
        core, core_share = tumours.get("share_with_core", {}), tumours.get("core_share_of_wt_log10")  # session 61
        if core:
            m["core_present_share"], m["core_present_share_real"] = core["synthetic"], core["real"]
        if core_share:
            m["core_share_of_wt_vs_real"] = _median_vs_real(core_share)
        for key, part in (("tumour_share_pass", tumours["share_with_tumour"]), ("tumour_size_pass",
                                                                              tumours["size_log10_wt_fraction"]),
                          ("tumour_several_pass", several), ("et_share_of_wt_pass", et_share or {}),
                          ("core_present_pass", core), ("core_share_of_wt_pass", core_share or {})):
            if "pass" in part:  # the check's own verdicts (shares within their binomial allowance; sizes' W1)
                m[key] = float(bool(part["pass"]))
    sets = res.get("utility", {}).get("training_sets", {})
    if "synthetic" in sets:  # train on synthetic vs real at equal N; real + synthetic vs all real
        equal = sets.get("real_matched", sets.get("real"))

        def dice(s: dict[str, Any], r: str, with_region: bool) -> float:
            # the goal's reading is on the test cases whose labels hold the region (reports since 2026-12-03:
            # over all cases, the tumour-free ones score 1 or 0 on one false voxel and decided the TC/ET gain)
            if not with_region:
                return float(s["aggregate"][r]["dice_mean"])  # (report.json writes a nan as "nan")
            split = s.get("by_tumour_presence")
            return float(split["with_region"][r]["dice_mean"]) if split else math.nan

        for r in ("WT", "TC", "ET"):
            for suffix, with_region in (("", True), ("_all_cases", False)):
                syn, real = dice(sets["synthetic"], r, with_region), dice(equal, r, with_region)
                m[f"utility_ratio{suffix}_{r}"] = syn / real if real > 0 else math.nan
                if "real+synthetic" in sets and "real" in sets:
                    m[f"utility_gain{suffix}_{r}"] = (dice(sets["real+synthetic"], r, with_region)
                                                      - dice(sets["real"], r, with_region))
    tissue = res.get("tissue", {}).get("synthetic_vs_real", {}).get("metrics", {})
    if tissue:
        m["tissue_qc_pass"] = sum(v["pass"] is True for v in tissue.values())
        m["tissue_qc_checks"] = sum(v["pass"] is not None for v in tissue.values())  # None: not measurable here
        # the readings the issue's goals name (fractions, the CSF shell, WM/GM contrast within 10 %), each
        # beside the held-out real mean it is judged against
        for key, v in tissue.items():
            if v.get("synthetic_mean") is None or v.get("real_mean") is None:
                continue
            if key.startswith("wm_gm_contrast_"):
                if v["real_mean"]:
                    m[f"tissue_contrast_error_{key.rsplit('_', 1)[1]}"] = v["synthetic_mean"] / v["real_mean"] - 1
            else:
                m[f"tissue_{key}"], m[f"tissue_real_{key}"] = v["synthetic_mean"], v["real_mean"]
    mem = res.get("memorisation", {}).get("summary")
    if mem:
        m["memorisation_flagged"] = mem["flagged"]
        m["memorisation_cases"] = mem["synthetic_nn_similarity"]["n"]
        m["memorisation_max_similarity"] = mem["synthetic_nn_similarity"]["max"]
        m["memorisation_threshold"] = mem["threshold"]
        m["memorisation_heldout_flagged"] = mem["control_heldout_real"]["flagged"]
    return {k: float(v) for k, v in m.items()}


def run_config_path(out: Path, run: str) -> Path:
    return out / "configs" / f"{run}.yaml"


def resolve_configs(args: argparse.Namespace, p: dict, out: Path) -> list[Path]:
    """Every run's resolved config in OUT/configs/ (before any work: a bad --set is one line, exit 2)."""
    from medidiff.config import ConfigError, load_config, save_resolved

    for o in args.overrides:
        key = o.split("=", 1)[0].strip()
        if "=" not in o or key in OWNED:
            raise ConfigError(f"--set {o}: " + ("expected KEY=VALUE" if "=" not in o else
                                                f"{key} is set by this script per seed ({', '.join(OWNED)})"))
    base, smoke = overrides(p, out, args.device, args.smoke), (["train.max_steps=2"] if args.smoke else [])
    paths = []
    for run, (variant, s) in runs_of(args).items():
        minutes, vae = args.minutes, []
        if variant in VAE_STAGES:  # the budget split: the VAE first, the diffusion on its latents after
            share = VAE_STAGES[variant]
            # the user's data keys reach the autoencoder too (one grid and intensity scale for both stages); the
            # rest are the diffusion's (its train.max_steps would cut the VAE short)
            data_sets = [o for o in args.overrides if o.split("=", 1)[0].strip().startswith("data.")]
            vae_cfg = load_config(None, [*base, *VAE_KEYS, *data_sets, f"seed={s}", f"name={run}_vae",
                                         f"train.max_minutes={share * args.minutes}", *smoke])
            save_resolved(vae_cfg, out / "configs", vae_config_path(out, run).name)
            minutes = (1 - share) * args.minutes
            vae = [f"latent.path={vae_codec_dir(out, run)}"]
        cfg = load_config(None, [*base, *ARMS[ARM], *VARIANTS[variant], *vae, f"seed={s}", f"name={run}",
                                 f"train.max_minutes={minutes}", *smoke])
        path = save_resolved(cfg, out / "configs", f"{run}.yaml")
        if args.overrides:  # applied to the saved file, so an error names it and the --set, not 40 script keys
            path = save_resolved(load_config(path, args.overrides), out / "configs", f"{run}.yaml")
        paths.append(path)
    return paths


def check_model_recipe(model: Path, run_config: Path) -> None:
    """``--model``: refuse a model folder whose training config is not the run's recipe (the variant
    and seed it is reported under); where files are, the run's length and bookkeeping may differ
    (the keys a resume may change), its sampler may not (generate samples with the folder's own, and
    the report states the run's; --tail-steps, --sampler and --steps, in the report's command and each seeds/
    record, apply to all runs alike). A setting newer than the model compares as its default."""
    from medidiff.config import ConfigError, config_changes, load_config, to_dict
    from medidiff.experiment import ExperimentConfig
    from medidiff.training.loop import RESUME_MAY_CHANGE

    meta = model / "config.json"
    if not meta.is_file() or not (model / "model.safetensors").is_file():
        raise ConfigError(f"--model {model}: not an exported model folder (config.json and model.safetensors)")
    trained = json.loads(meta.read_text()).get("config") or {}
    # latent.path: a VAE arm's codec folder in the job that trained it (the model folder carries its own copy)
    may_differ = (*(k for k in RESUME_MAY_CHANGE if k != "sampler."), "latent.path")
    changed = config_changes(trained, to_dict(load_config(run_config)), to_dict(ExperimentConfig()), may_differ)
    if changed:
        raise ConfigError(f"--model {model}: trained with another recipe than {run_config.name} ("
                          + ", ".join(changed[:4]) + (f" +{len(changed) - 4} more" if len(changed) > 4 else "")
                          + "): give the --runs VARIANT:SEED it was trained as, and its sampler (--set sampler.KEY=VALUE)")


def check_model_data(model: Path, manifest: Path) -> None:
    """``--model``: refuse a model trained on another data set (its held-out fold could hold cases it
    trained on, and the memorisation audit would search the wrong cases)."""
    from medidiff.data.mask_sources import training_data_record
    from medidiff.errors import MedidiffError

    record = json.loads((model / "config.json").read_text()).get("training_data")
    here = training_data_record({"manifest": str(manifest), "fold": 0})  # this script holds fold 0 out
    if record != here:
        raise MedidiffError(f"--model {model}: trained on {record}, this data is {here}: evaluate it on its own data")


def run_one(args: argparse.Namespace, out: Path, run: str) -> None:
    """Train one run, export it, generate its cases and score their background (its own process)."""
    from medidiff.config import load_config

    cfg = load_config(run_config_path(out, run))
    # medidiff's own INFO lines in this run's log, timed: where its setup goes before the first step
    # (the memory cache fill, the set moved onto the card; ~2.5 min of a lease's wall in session 17)
    handler = logging.StreamHandler()
    utc = logging.Formatter("[%(asctime)sZ] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    utc.converter = time.gmtime  # as log()'s stamps
    handler.setFormatter(utc)
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    if args.model and run == next(iter(runs_of(args))):  # given, not trained: its steps from its folder, no loss curve
        model = Path(args.model).absolute()
        steps = json.loads((model / "config.json").read_text()).get("step", math.nan)
        trained = {"steps": steps, "train_seconds": 0.0, "steps_per_s": None, "loss_first_200": None,
                   "loss_last_200": None, "trained_here": False}
        log(f"{run}: the model {model} ({steps} steps), not trained here")
    else:
        vae = {}
        if vae_config_path(out, run).is_file():  # a VAE arm: its autoencoder first, inside the run's minutes
            vae_cfg = load_config(vae_config_path(out, run))
            log(f"{run}: training its VAE for {vae_cfg.train.max_minutes} min")
            vae, codec = train_and_export(vae_cfg, vae_codec_dir(out, run))
            log(f"{run}: VAE {vae['steps']} steps, codec exported to {codec}")
        log(f"{run}: training for {cfg.train.max_minutes} min")
        trained, model = train_and_export(cfg, out / "models" / run)
        if vae:
            trained["vae"] = vae
        trained["trained_here"] = True
        log(f"{run}: {trained['steps']} steps ({trained['steps_per_s']} steps/s), exported to {model}")
    masks = None
    if cfg.conditioning.mask:
        masks = (generated_masks(out, args.mask_source) if args.mask_source
                 else training_masks(out, cfg, run, args.generate))
    # a second stage's seeds are not its first stage's (which drew from --case-seed on): the images would start from
    # the noise that drew their label maps (generate refuses; sessions 36-37's two-stage jobs ran before that, coupled)
    g = generate_and_score(model, out / "generated" / run, args.generate, args.device, masks=masks,
                           seed=args.case_seed + (FIRST_STAGE_SEED_OFFSET if cfg.conditioning.mask and args.mask_source else 0),
                           tail_steps=args.tail_steps, sampler=args.sampler, steps=args.steps)
    scores = g["background_per_case"]
    variant, seed = runs_of(args)[run]
    record = {"run": run, "variant": variant, "seed": seed, "model": str(model), **trained, "generate_seconds": g["seconds"],
              "generated": g["cases"], "background_per_case": scores, "background": g["background"],
              "background_rms_max": max(sc["background_rms"] for sc in scores), "tail_steps": args.tail_steps,
              "sampler": args.sampler, "sampler_steps": args.steps,  # None: the model's own
              "case_seed": args.case_seed}
    (out / "seeds").mkdir(exist_ok=True)
    (out / "seeds" / f"{run}.json").write_text(json.dumps(record, indent=2))
    log(f"{run}: {g['cases']} cases in {g['seconds']:.0f} s, background RMS {record['background']['background_rms']:.4f}")


def mask_conditioned(variant: str) -> bool:
    """Whether ``variant`` trains a mask-conditioned model (its masks come in; it generates no labels)."""
    return "conditioning.mask=true" in VARIANTS[variant]


def training_masks(out: Path, cfg: Any, run: str, n: int) -> Path:
    """A mask-conditioned run's label maps: the first ``n`` training cases' (folds other than the held-out 0, which
    no generated case may come from) on the model grid, in OUT/masks/<run>/ (one folder a run: the runs write
    side by side). A case of the training folds is what a user of a mask-conditioned model holds; the memorisation
    audit, against every training case, is what would catch an image copied for its mask."""
    from medidiff.data.manifest import label_map_of, load_manifest, read_manifest
    from medidiff.data.masks import write_model_grid_masks

    folder = out / "masks" / run
    items = [it for it in load_manifest(out / "manifest.json", out / "data", "training") if it.get("fold") != 0][:n]
    if not items:
        raise SystemExit(f"{out / 'manifest.json'}: no training case to take a mask from")
    folder.mkdir(parents=True, exist_ok=True)
    write_model_grid_masks(items, cfg.data, folder, label_map=label_map_of(read_manifest(out / "manifest.json")))
    return folder


MASK_SOURCE_WAIT_S = 1800.0  # the source run trains beside this one; a given model (--model) only generates


def generated_masks(out: Path, source: str, *, wait_s: float = MASK_SOURCE_WAIT_S) -> Path:
    """A mask-conditioned run's label maps from run ``source``'s generated cases (--mask-source: the two-stage
    recipe, the joint model's labels in, the images out; no real case's mask): the source's own folder, which
    `generate --masks` reads as a user's second stage would (each case's seg.nii.gz, the first model recorded in
    the provenance). Waits for the source's generation (its seeds/<source>.json, written after it) up to ``wait_s``."""
    done = out / "seeds" / f"{source}.json"
    end = time.monotonic() + wait_s
    while not done.is_file():
        if time.monotonic() > end:
            raise SystemExit(f"--mask-source {source}: no generated cases after {wait_s:.0f} s ({done} missing)")
        time.sleep(5.0)
    folder = out / "generated" / source
    if not any(folder.glob("case_*/seg.nii.gz")):
        raise SystemExit(f"--mask-source {source}: its generated cases carry no seg.nii.gz (it generates no labels)")
    return folder


def training_groups(runs: dict[str, list[str]], nets: dict[str, list[str]], *, nets_after: bool,
                    one_at_a_time: bool) -> list[dict[str, list[str]]]:
    """The training commands in the groups that run in turn, each group's commands side by side on the card.
    Default: the runs and the evaluation's nets all at once. --nets-after: the runs have the card to
    themselves (2026-12-01f: one run beside the two nets made 17-25 steps/s against 50 alone), then the nets.
    --one-at-a-time: each run alone, in order, then the nets."""
    if one_at_a_time:
        return [*({run: cmd} for run, cmd in runs.items()), nets]
    return [runs, nets] if nets_after else [{**runs, **nets}]


def _together(record: dict[str, Any]) -> str:
    """How the runs shared the card: their steps/s depend on it (22.2 each side by side, 48.3 alone, compiled)."""
    return "one at a time" if record.get("one_at_a_time") else "side by side"


def _nets_wording(record: dict[str, Any]) -> str:
    """Where the evaluation's nets trained relative to the runs (their share of the card explains a run's
    steps/s), and which were reused instead."""
    trained = record.get("nets_trained", ["feature_net", "tissue_net"])  # records before --nets: both trained
    after = record.get("nets_after") or record.get("one_at_a_time")
    text = (f"the evaluation's {' and '.join(trained)} trained {'after' if after else 'beside'} them"
            if trained else "no evaluation net trained")
    if record.get("nets_reused"):
        text += f" ({' and '.join(record['nets_reused'])} reused from an earlier run on this manifest)"
    return text


def reuse_nets(source: str, names: Sequence[str], out: Path) -> list[str]:
    """Copy the evaluation's shared nets (``names``: feature_net, tissue_net) that ``source`` holds,
    trained by an earlier run on this same manifest, into ``out``; returns the ones copied. A net trained
    on another manifest (its recipe's sha256) is left out and trained again: evaluate would refuse it.
    One instrument across device sessions also keeps their scores comparable."""
    import shutil

    from medidiff.files import file_sha256

    manifest_sha = file_sha256(out / "manifest.json")
    reused = []
    for name in names:
        src = Path(source) / name
        if src.resolve() == (out / name).resolve():  # already in place (--nets OUT): nothing to copy, or to delete
            reused.append(name)
            continue
        if not (src / "config.json").is_file() or not (src / "model.safetensors").is_file():
            log(f"{name}: no saved net (config.json and model.safetensors) in {src}: trained here")
            continue
        trained_on = json.loads((src / "config.json").read_text()).get("recipe", {}).get("manifest_sha256")
        if trained_on != manifest_sha:
            log(f"{name}: {src} was trained on manifest {str(trained_on)[:16]}, this run's is {manifest_sha[:16]}: trained here")
            continue
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(src, out / name)
        reused.append(name)
        log(f"{name}: reused from {src}")
    return reused


def run_shared_net(args: argparse.Namespace, out: Path, name: str) -> None:
    """Train one of the evaluation's shared nets (SHARED_NETS) once, into OUT/<name> (its own process,
    beside the seeds' training), with the budget the evaluations would give it."""
    from medidiff.cli.evaluate_cmd import load_eval_configs
    from medidiff.eval import train_feature_net, train_tissue_net

    trainer = {"feature_net": train_feature_net, "tissue_net": train_tissue_net}[name]
    exp, cfg = load_eval_configs(str(run_config_path(out, next(iter(runs_of(args))))), eval_scale_overrides())
    cfg = replace(cfg, seeds=[0], epochs=args.eval_epochs, steps=args.eval_steps, device=args.device)
    t0 = time.perf_counter()
    trainer(exp, cfg, real_manifest=out / "manifest.json", root=out / "data", out_dir=out / name, progress=False)
    log(f"{name} trained in {time.perf_counter() - t0:.0f} s: {out / name}")


def eval_scale_overrides() -> list[str]:
    """The dotted keys that put every evaluation of every job on one intensity scale, the brain scale (DataConfig's
    defaults: each case's brain 0.5-99.5th percentiles to [-1, 1]; the shipped model's until 2026-12-07, and the one
    ``medidiff evaluate`` reads every set on since: eval.intensity_scale brain): the in-process realism and audit,
    ``medidiff evaluate`` and the shared feature and tissue nets (the kept feature net was trained on it).
    Evaluation rescales every generated case through that pipeline, so a run trained on another scale is judged
    as evaluate judges it. (The background rows read the written files: their scale is each run's own, ROWS says so.)

    Why fixed, not the first run's: a run on the outside-the-tumour scale evaluated alone was read on its own
    pipeline, and its t1c histogram (W1 0.035) was set against other jobs' shipped-scale readings (0.27) as an 8x
    gain; on one scale it had none (quality_scale_h200_20261204)."""
    from medidiff.data.config import DataConfig, intensity_scale

    return scale_overrides(intensity_scale(DataConfig()))


def normal_brain_scale_overrides() -> list[str]:
    """The realism phase's second reading (OUT/realism_outside_tumour/): each case's percentiles over the brain
    outside its labelled tumour, the normal brain to [-1, 0] and the tumour above it. Why: on the brain scale the
    brain's top percentile lies in t1c's enhancing tumour, so its histogram mixes the normal brain's intensities
    with the tumour's contrast and stray bright voxels; here the scale is set by the normal brain alone (the
    histogram still covers the whole brain, tumour included: the then shipped model's t1c 0.038 here against 0.178
    on the brain scale, quality_scale_h200_20261204/histogram_parts). Later keys win: the brain keys, then these."""
    return [*eval_scale_overrides(), "data.percentile_region=outside_tumour", "data.percentile_top=0.0",
            "eval.intensity_scale=config"]  # evaluate reads every set on the brain's scale unless told


def shares_net(args: argparse.Namespace, phase: str) -> bool:
    """Whether ``phase``'s evaluations load the one net trained beside the runs (SHARED_NETS). Not utility with
    ``--utility-seeds``: a plateau reading compares the all-real segmenter with the others at the same epochs and
    seeds, and the shared feature net (the tracked one: width 6, 6 epochs, seed 0) is neither."""
    return phase in SHARED_NETS and not (phase == "utility" and getattr(args, "utility_seeds", None))


def evaluate_command(args: argparse.Namespace, out: Path, run: str, phase: str) -> list[str]:
    seeds = (getattr(args, "utility_seeds", None) if phase == "utility" else None) or [0]
    cmd = [sys.executable, "-m", "medidiff", "evaluate", "--real", str(out / "manifest.json"), "--root", str(out / "data"),
           "--synthetic", str(out / "generated" / run), "--out", str(eval_dir(out, run, phase)),
           "--config", str(run_config_path(out, run)), "--device", args.device, "--tasks", EVAL_PHASES[phase],
           "--epochs", str(args.eval_epochs), "--seeds", *map(str, seeds), "--no-progress"]
    if shares_net(args, phase):
        cmd += [f"--{SHARED_NETS[phase].replace('_', '-')}", str(out / SHARED_NETS[phase])]
    cmd += [word for key in eval_sets(args, phase) for word in ("--set", key)]
    if args.eval_steps:
        cmd += ["--steps", str(args.eval_steps)]
    return cmd


def eval_sets(args: argparse.Namespace, phase: str) -> list[str]:
    """The dotted keys an evaluation of ``phase`` reads with: the brain scale, the real cases it reads, smoke's
    small settings (``medidiff evaluate``'s --set, and the in-process image phase's)."""
    sets = list(eval_scale_overrides())
    if args.eval_real and phase == "image":
        # Frechet against the whole training fold and its floor from every held-out case: against one seeded 192
        # the ratio read at the floor's low end (3.4x range over draws, frechet_reference_cpu_20261206); the
        # realism checks, whose cost grows with the cases, keep the seeded subset they read before
        sets.append(f"eval.realism_max_real={args.eval_real}")
    elif args.eval_real and phase != "memorisation":  # the audit sees every training case
        sets.append(f"eval.max_real={args.eval_real}")
    if args.smoke:
        sets += ["eval.msssim_pairs=5", "eval.num_examples=1", "eval.memorisation_controls=4"]
    return sets


def _real_cases_wording(record: dict[str, Any], phase: str) -> str:
    """The real cases a phase's evaluations read (evaluate_command's choice), for the report."""
    n = record["eval_real"]
    if phase != "image":
        return f", {n} real cases a side"
    # (reports before session 48: image read n a side throughout)
    return (f", Frechet / MMD / PRDC against every real training case (the floor from every held-out one), the realism "
            f"checks against {n} a side" if record.get("image_whole_fold") else f", {n} real cases a side")


def fmt(s: dict[str, Any], digits: int = 4) -> str:
    """'mean [t95 lo, hi] (min-max)' of summarise_over_seeds."""
    if s["mean"] is None:
        return "n/a"
    text = f"{s['mean']:.{digits}f}"
    if s["t95"] is not None:
        text += f" [{s['t95'][0]:.{digits}f}, {s['t95'][1]:.{digits}f}] ({s['min']:.{digits}f}-{s['max']:.{digits}f})"
    return text


ROWS: list[tuple[str, str, int]] = [
    # (metric key, what it is, digits)
    ("steps", "training steps", 0),
    ("loss_last_200", "loss, last 200 steps", 4),
    ("background_rms", "background RMS outside the head, each run's written scale (goal <= 0.02)", 4),
    ("speckle", "speckle (outside voxels > 0.05), each run's written scale", 5),
    ("head_fraction", "head fraction of the grid", 3),
    ("brain_size_log10_vs_real", "brain size: median log10 brain share, synthetic - real", 3),
    ("brain_size_w1", "brain size: W1 of log10 brain share vs real (fails above 2 x floor + 0.04)", 3),
    *[(f"spread_{p}", f"spread across cases: robust sd of {p.replace('_', ' ')} over real's (all: the properties' "
       "geometric mean; real: the floor's median)", 2) for p in ("all", *spread_property_names(MODALITIES))],
    ("spread_pass", "spread across cases: no property nor their geometric mean below the real resamples' low quantile (1 = yes)", 0),
    ("eval_background_rms", "evaluate: background RMS outside the brain", 4),
    ("tissue_qc_pass", "tissue QC checks passed", 1),
    *[(f"tissue_{k}", f"tissue: {k.replace('_', ' ')} (real: last column)", 3)
      for k in ("fraction_CSF", "fraction_GM", "fraction_WM", "csf_share_surface", "csf_share_deep")],
    *[(f"tissue_contrast_error_{m}", f"tissue: WM/GM contrast, synthetic / real - 1, {m} (goal within +-0.10)", 3)
      for m in MODALITIES],
    *[(f"spectrum_top_band_ratio_{m}", f"spectrum top band power ratio {m} (goal 0.5-2)", 3) for m in MODALITIES],
    *[(f"spectrum_max_abs_log10_{m}", f"spectrum max abs log10 ratio {m} (goal <= 0.30)", 3) for m in MODALITIES],
    *[(f"coherence_vs_real_{m}", f"detail coherence, synthetic - real {m} (< 0 grain, > 0 blur; goal within floor + 0.03)", 3)
      for m in MODALITIES],
    *[(f"histogram_w1_{m}", f"histogram W1 {m}", 3) for m in MODALITIES],
    *[(f"histogram_w1_outside_tumour_{m}", f"histogram W1 {m}, outside-the-tumour scale (normal brain to [-1, 0])", 3)
      for m in MODALITIES],
    *[(f"et_contrast_vs_real_{m}", f"ET median - normal brain median, synthetic - real, {m}, outside-the-tumour scale "
       "(< 0: ET too dark)", 3) for m in MODALITIES],
    *[(f"et_upper_vs_real_{m}", f"ET 90th percentile - normal brain median, synthetic - real, {m}, outside-the-tumour "
       "scale (< 0: the ET's bright end too dark; a median < 0 with this near 0: the ET label too wide)", 3)
      for m in MODALITIES],
    *[(f"ed_contrast_vs_real_{m}", f"edema median - normal brain median, synthetic - real, {m}, outside-the-tumour scale "
       "(> 0: edema too bright)", 3) for m in MODALITIES],
    *[(f"ncr_contrast_vs_real_{m}", f"necrotic core (TC without ET) median - normal brain median, synthetic - real, "
       f"{m}, outside-the-tumour scale (not judged: real sets may lack cores)", 3) for m in MODALITIES],
    *[(f"top_in_tumour_vs_real_{m}", f"share of the brain's brightest 0.5 % inside the tumour (WT + 2 voxels), synthetic - real, {m} "
       "(< 0: stray bright voxels)", 3) for m in MODALITIES],
    ("tumour_contrast_pass", "realism check: tumour contrast, brain scale (1 pass; a mean: the share passing; "
     "since session 37 the edema judged too)", 2),
    ("frechet_3d", "Frechet 3D (fixed feature net)", 2),
    ("frechet_3d_low", "Frechet 3D, low end of a 95 % interval for the generator's typical figure at this count "
     "(jackknife over the generated cases; runs compare by the differences below the table)", 2),
    ("frechet_3d_high", "Frechet 3D, high end of that interval", 2),
    ("frechet_3d_floor", "Frechet 3D floor (held-out real)", 2),
    ("frechet_over_floor", "Frechet / floor (goal <= 3)", 2),
    *[(f"prdc_{k}", f"{k} on the feature net's 3D features ({what}; real: the floor's median)", 3) for k, what in (
        ("precision", "share of the cases on the real manifold"), ("recall", "share of real cases in the set's reach"),
        ("density", "about 1 for a real-like set"), ("coverage", "share of real cases with a case near"))],
    ("prdc_pass", "precision, recall and coverage each within or above the floor's real subsets (1 = yes)", 0),
    ("frechet_3d_within_floor_range", "Frechet 3D inside the floor's range over real subsets (1: no verdict at this count)", 0),
    *[(f"fidelity_ratio_{r}", f"mask fidelity {r}: synthetic / real held-out Dice on the cases with the region "
       "(goal >= 0.85)", 3) for r in ("WT", "TC")],
    *[(f"utility_ratio_{r}", f"train on synthetic / real at equal N, Dice {r} on the test cases with the region "
       "(goal >= 0.9)", 3) for r in ("WT", "TC", "ET")],
    *[(f"utility_gain_{r}", f"real + synthetic - real, Dice {r} on the test cases with the region (goal >= 0)", 3)
      for r in ("WT", "TC", "ET")],
    *[(f"utility_ratio_all_cases_{r}", f"train on synthetic / real at equal N, Dice {r} over all test cases", 3)
      for r in ("WT", "TC", "ET")],
    *[(f"utility_gain_all_cases_{r}", f"real + synthetic - real, Dice {r} over all test cases", 3)
      for r in ("WT", "TC", "ET")],
    ("fidelity_wt_dice_with_tumour", "mask fidelity: WT Dice on the cases with a tumour", 3),
    ("fidelity_tumour_free_cases", "mask fidelity: tumour-free generated cases", 1),
    ("unlabelled_tumour_wt_share", "tumour shown away from its label: share of generated cases flagged (WT)", 2),
    ("unlabelled_tumour_pass", "tumour shown away from its label: check passes in every region (1 pass; a mean: the share passing)", 2),
    ("tumour_share", "share of generated cases with a tumour (real: next row)", 3),
    ("tumour_share_real", "share of real training cases with a tumour", 3),
    ("tumour_size_w1", "tumour size: W1 of log10 WT fraction vs real", 3),
    ("tumour_share_pass", "realism check: tumour share within its allowance (1 pass; a mean: the share passing)", 2),
    ("tumour_size_pass", "realism check: tumour sizes' W1 within 2 x floor + 0.1 (1 pass; a mean: the share passing)", 2),
    ("et_share_of_wt_vs_real", "ET voxels / WT voxels, median log10, synthetic - real (> 0: ET label too wide)", 3),
    ("et_share_of_wt_pass", "realism check: ET share of WT's W1 within 2 x floor + 0.1 (1 pass; a mean: the share passing)", 2),
    ("tumour_several_share", "share of the generated cases with a tumour that hold two or more (real: next row)", 3),
    ("tumour_several_share_real", "share of the real training cases with a tumour that hold two or more", 3),
    ("tumour_several_pass", "realism check: that share within its allowance (1 pass; a mean: the share passing)", 2),
    ("core_present_share", "share of the generated cases with a tumour that have a necrotic core (real: next row)", 3),
    ("core_present_share_real", "share of the real training cases with a tumour that have a necrotic core", 3),
    ("core_present_pass", "realism check: that share within its allowance (1 pass; a mean: the share passing)", 2),
    ("core_share_of_wt_vs_real", "core voxels / WT voxels, median log10, synthetic - real (< 0: cores too small)", 3),
    ("core_share_of_wt_pass", "realism check: core share of WT's W1 within 2 x floor + 0.1 (1 pass; a mean: the share passing)", 2),
    ("memorisation_flagged", "memorisation: cases flagged (goal 0)", 1),
    ("memorisation_max_similarity", "memorisation: max NN similarity", 4),
]


def _difference_verdict(lo: float, hi: float, unresolved: str) -> str:
    """A Frechet difference's 95 % interval (run minus base) read: wholly above 0, wholly below, or neither."""
    return "farther from real" if lo > 0 else "closer to real" if hi < 0 else unresolved


def utility_spread_lines(record: dict[str, Any], runs: Sequence[str]) -> list[str]:
    """The utility rows are one evaluation each: on a GPU a segmenter seed does not replay, and the all-real
    segmenter trained twice on the same cases and seed read ET 0.77 and 0.93 over all cases, so real + synthetic -
    real read -0.005 in one job and +0.024 in the next (utility_matched_h100_20261208). Said under the table
    wherever a run has utility rows."""
    if not any(record["per_run"].get(run, {}).get(f"utility_gain_{r}") is not None for run in runs
               for r in ("WT", "TC", "ET")):
        return []
    return ["- utility: each row is one evaluation (its intervals in eval/<run>_utility/report.json cover test cases "
            "and segmenter seeds); on a GPU a segmenter seed does not replay, and one job's sign of real + synthetic "
            "- real moved from -0.005 to +0.024 on WT in the next (utility_matched_h100_20261208): a verdict needs "
            "several evaluations"]


def frechet_difference_lines(record: dict[str, Any], runs: Sequence[str]) -> list[str]:
    """Every pair of runs' 3D Frechet difference with a 95 % interval over the draws of generated cases
    (image_metrics.frechet_difference: paired case by case where both reports kept their left-out figures,
    `frechet_leave_one_out` in the record): one draw of 64 cases read 36 then 63 for one recipe in two jobs,
    so runs compare by this, not by their bare figures. Each line is its own 95 % reading: among many pairs
    one may cross by chance."""
    from medidiff.eval.image_metrics import frechet_difference

    left_out = record.get("frechet_leave_one_out", {})

    def row(run: str) -> dict[str, Any]:
        m = record["per_run"].get(run, {})
        keys = {"frechet_se": "frechet_3d_se", "jackknife_cases": "frechet_3d_cases"}
        return {"frechet": m.get("frechet_3d"), **{k: m[v] for k, v in keys.items() if v in m},
                **({"frechet_leave_one_out": left_out[run]} if run in left_out else {})}

    have = [run for run in runs if "frechet_se" in row(run)]
    out = [f"- Frechet 3D: {run} has no interval (no image phase, under 3 cases compared, or a report from before session 39)"
           for run in runs if run not in have]
    for k, base in enumerate(have):
        for run in have[k + 1:]:
            d = frechet_difference(row(run), row(base))
            if d is None:
                out.append(f"- Frechet 3D, {run} - {base}: not compared (read at different case counts)")
                continue
            lo, hi = d["interval"]
            verdict = _difference_verdict(lo, hi, "not resolved at this count: the interval holds 0")
            same = record["runs"].get(run, {}).get("variant") == record["runs"].get(base, {}).get("variant")
            out.append(f"- Frechet 3D, {run} - {base}: {d['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] ({verdict}; "
                       + ("paired case by case" if d["paired"] else "as independent draws")
                       + ("; the same recipe: a difference is the spread between its training runs" if same else
                          "; the draw of cases only, not the spread between training runs") + ")")
    out += variant_mean_difference_lines(record)
    return ["", *out] if out else []


def variant_mean_difference_lines(record: dict[str, Any]) -> list[str]:
    """Every pair of variants with 2+ trained seeds: the difference of their mean 3D Frechet with a 95 % Welch
    interval over the seeds' figures. A seed's figure varies with its training run and its draw of cases, so
    this interval holds both (the pairwise lines hold the draw only): it is how a recipe is compared with
    another over seeds. With 2-3 seeds a side it is wide; figures read at different case counts are not
    compared (another small-sample bias)."""
    from scipy import stats

    def figures(variant: str) -> list[tuple[float, Any]]:
        rows = [record["per_run"].get(run, {}) for run in summarised_runs(record, variant)]
        return [(r["frechet_3d"], r.get("frechet_3d_cases")) for r in rows  # a failed seed's nan left out
                if r.get("frechet_3d") is not None and math.isfinite(r["frechet_3d"])]

    groups = {v: f for v in record.get("variants", []) if len(f := figures(v)) >= 2}
    out = []
    for k, base in enumerate(groups):
        for variant in list(groups)[k + 1:]:
            head = f"- Frechet 3D, mean of {variant} ({len(groups[variant])} seeds) - mean of {base} ({len(groups[base])})"
            if len({c for _, c in groups[base] + groups[variant]}) > 1:
                out.append(f"{head}: not compared (read at different case counts)")
                continue
            a, b = (np.array([f for f, _ in groups[v]]) for v in (variant, base))
            va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
            diff, se = float(a.mean() - b.mean()), math.sqrt(va + vb)
            if se == 0:  # identical figures a side: no spread to read an interval from
                out.append(f"{head}: {diff:+.2f} (no interval: every seed's figure the same on both sides)")
                continue
            df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
            half = float(stats.t.ppf(0.975, df)) * se
            lo, hi = diff - half, diff + half
            verdict = _difference_verdict(lo, hi, "not resolved by these seeds: the interval holds 0")
            out.append(f"{head}: {diff:+.2f} [{lo:+.2f}, {hi:+.2f}] ({verdict}; Welch over the seeds' figures: "
                       "the spread between training runs and the draw of cases together)")
    return out


def write_report(record: dict[str, Any], out: Path) -> None:
    runs, variants = list(record["runs"]), record["variants"]
    with_means = any(len(summarised_runs(record, v)) > 1 for v in variants)  # 2+ trained seeds of one
    budget = f"at most {record['minutes']} min each (train.max_steps may end a run first: its steps are in the table)"
    lines = [
        "# Quality at scale: the shipped recipe on a larger anatomy set" + (", several seeds" if with_means else "")
        + ("" if variants == ["x0"] else f", variants {', '.join(variants)}"),
        "",
        f"- command: `{record['command']}`",
        f"- {record['date']}, {record.get('device', '')}, torch {record.get('torch', '')}",
        f"- data: {record['data']['cases']} anatomy cases {tuple(record['data']['shape'])} (seed 0), fold 0 held out; "
        f"written in {record['data_seconds']} s by {record['workers']} processes",
        (f"- not trained here: the model `{record['model']}` generated as run {runs[0]}"
         + (f"; the other {len(runs) - 1} run{'s' if len(runs) > 2 else ''} trained beside its generation on one "
            f"device, {budget}, and summarised without it" if len(runs) > 1 else "")
         + f", {_nets_wording(record)}; "
         if record.get("model") else
         f"- training: {len(runs)} runs {_together(record)} on one device, {budget}, "
         f"{_nets_wording(record)}; ")
        + f"config OUT/configs/<run>.yaml (quality_ablation's {ARM} arm, then the variant's keys), extra --set: "
        f"{record['overrides'] or 'none'}",
        *[f"- variant `{v}`: {', '.join(VARIANTS[v]) or 'the shipped recipe'}" for v in variants],
        *[f"- variant `{v}` trains its VAE first for {VAE_STAGES[v]:.0%} of its minutes (OUT/configs/<run>_vae.yaml, "
          "codec in OUT/codecs/<run>; its steps in quality_scale.json's run_records[run].vae), then the diffusion "
          "on its latents for the rest" for v in variants if v in VAE_STAGES],
        *([f"- mask-conditioned runs generated for the labels run {record['mask_source']} generated (the two-stage "
           "recipe)"] if record.get("mask_source") else
          ["- mask-conditioned runs generated for the first training cases' masks (OUT/masks/<run>/)"]
          if any(mask_conditioned(v) for v in variants) else []),
        "- evaluation phases: " + ", ".join(
            f"realism (in process, against {record['realism_cases']} real training and {record['realism_cases']} "
            "held-out cases)" if k == "realism" else "memorisation (in process, evaluate's task against every real "
            "training case, no cap)" if k == "memorisation" else f"{k} (" + (
                "in process: evaluate's image task, the real side built once for every run" if
                record.get("eval_phases", {}).get(k, {}).get("how") == "in process" else
                f"`medidiff evaluate --tasks {EVAL_PHASES[k]}`")
            + (f", with the one {SHARED_NETS[k]} trained beside the runs"
               if shares_net(argparse.Namespace(utility_seeds=record.get("utility_seeds")), k) else "")
            + (f", every segmenter (the all-real one too) trained in the phase, seeds {record['utility_seeds']}"
               if k == "utility" and record.get("utility_seeds") else "")
            + (_real_cases_wording(record, k) if record.get("eval_real") else "")
            + (", no cap)" if record.get("eval_phases", {}).get(k, {}).get("how") == "in process" else
               f", at most {record['eval_minutes']:g} min)")
            for k in record["phases"]) + f"; shared nets' epochs <= {record['eval_epochs']}; every phase on the "
        f"brain intensity scale ({', '.join(eval_scale_overrides())}), the realism phase also on the "
        "outside-the-tumour scale (its second histogram rows)"
        + (f", steps <= {record['eval_steps']}" if record["eval_steps"] else ""),
        *(["- interval: mean [95 % Student t interval over seeds] (min-max over seeds); n = seeds that finished"]
          if with_means else []),
        f"- wall clock: data {record['data_seconds']} s, training + export + generation "
        f"{record['train_phase_seconds']} s, evaluation " + (", ".join(
            f"{k} {v['seconds']} s" for k, v in record["eval_phases"].items() if v["seconds"] is not None)
            + (f", realism {record['realism_seconds']} s" if record.get("realism_seconds") is not None else "")),
        *([f"- the first trained run's model for benchmarks/pack_pretrained.py: `{out / 'models' / first}` (card "
           "facts: card_draft.json)"] if (first := first_trained_run(record)) in record["run_records"] else []),
        "",
        "| measure | " + " | ".join(runs) + "".join(f" | mean {v} [t95] (min-max)" for v in variants if with_means)
        + " | real (held out) / floor |",
        "|---|" + "---|" * len(runs) + ("---|" * len(variants) if with_means else "") + "---|",
    ]
    real = dict(record.get("real", {}))
    # the real-vs-real floor evaluate measured (held-out vs training cases: the same for every run)
    for key, floor_key in (("frechet_3d", "frechet_3d_floor"),
                           *[(f"prdc_{k}", f"prdc_{k}_floor") for k in ("precision", "recall", "density", "coverage")],
                           *[(f"spread_{p}", f"spread_{p}_floor") for p in ("all", *spread_property_names(MODALITIES))],
                           *[(f"spectrum_max_abs_log10_{m}", f"spectrum_floor_{m}") for m in MODALITIES],
                           *[(f"histogram_w1_{m}", f"histogram_w1_floor_{m}") for m in MODALITIES],
                           *[(f"histogram_w1_outside_tumour_{m}", f"histogram_w1_outside_tumour_floor_{m}")
                             for m in MODALITIES]):
        floors = [v for run in runs if (v := record["per_run"].get(run, {}).get(floor_key)) is not None]
        if floors:
            real[key] = float(np.mean(floors))
    for run in runs:  # the tissue readings' real reference (held-out real cases through the same segmenter)
        real |= {"tissue_" + k[len("tissue_real_"):]: v for k, v in record["per_run"].get(run, {}).items()
                 if k.startswith("tissue_real_")}
    for key, what, digits in ROWS:
        vals = [record["per_run"].get(run, {}).get(key) for run in runs]
        if all(v is None for v in vals):
            continue
        cells = ["n/a" if v is None else f"{v:.{digits}f}" for v in vals]
        if with_means:
            cells += [fmt(record["summary"][v][key], digits) if key in record["summary"][v] else "n/a" for v in variants]
        floor = real.get(key)
        lines.append(f"| {what} | " + " | ".join(cells) + " | " + ("" if floor is None else f"{floor:.{digits}f}") + " |")
    lines += frechet_difference_lines(record, runs)
    lines += utility_spread_lines(record, runs)
    lines += seed_pick_lines(record)
    lines += ["", "Per run: `eval/<run>/report.json` (image: every check with its rule and floor; report.md beside it "
              "where `medidiff evaluate` ran the phase), `eval/<run>_memorisation/report.json`, "
              "`eval/<run>_tissue/report.md` (tissue QC), `seeds/<run>.json` (training, generation, background "
              "per case).", ""]
    bands = record.get("spectrum_log10_ratio_per_band", {})
    if bands:
        lines += ["Power spectrum, log10 (synthetic / real) per radial band, low to high frequency (goal: every band "
                  "within +-0.30):", "", "| run | modality | bands |", "|---|---|---|"]
        lines += [f"| {run} | {mod} | {' '.join(f'{x:+.2f}' for x in per)} |"
                  for run, mods in bands.items() for mod, per in mods.items()]
        lines.append("")
    missing = missing_evaluations(record)
    if missing:
        lines += [f"**Missing evaluations**: {'; '.join(missing)}. Their rows are n/a and left out of the intervals.", ""]
    for run in runs:
        png = f"{run}_vs_real.png"
        if (out / png).exists():
            lines += [f"![{run}: generated cases (top row) above held-out real cases (bottom row)]({png})", ""]
    failed = {k: v for k, v in record["exits"].items() if v}
    if failed:
        lines += [f"**Failed steps** (exit codes; logs in `logs/`): {failed}", ""]
    write_atomic(out / "report.md", "\n".join(lines))


def missing_evaluations(record: dict[str, Any]) -> list[str]:
    """'<run> <phase> (<state>)' for every evaluation of a trained run that did not finish."""
    return [f"{run} {phase} ({state})" for phase, ph in record["eval_phases"].items()
            for run, state in ph["runs"].items() if state != "done"]


def first_trained_run(record: dict[str, Any]) -> str | None:
    """The first of the runs trained here (None: none was)."""
    return next(iter(trained_runs(record)), None)


def card_draft(record: dict[str, Any], out: Path, run: str) -> dict[str, Any]:
    """Facts for ``pack_pretrained.py MODEL --card`` about ``run``'s model (a person adds the limits'
    reading and the summary's wording before shipping it)."""
    from medidiff.config import load_config
    from medidiff.files import file_sha256
    from medidiff.training.checkpoint import load_tensors

    variant = record["runs"][run]["variant"]
    r0, m0 = record["run_records"][run], record["per_run"].get(run, {})
    cfg = load_config(run_config_path(out, run))
    params = sum(t.numel() for t in load_tensors(Path(r0["model"]) / "model.safetensors").values())
    flagged = {k: int(m0[k]) if k in m0 else "n/a" for k in ("memorisation_flagged", "memorisation_cases")}
    trained = len(trained_runs(record))
    return {
        "name": "anatomy-2mm",
        "summary": ("VAE-latent" if cfg.latent.type == "pretrained" else "pixel-space" if cfg.latent.levels == 0
                    else "wavelet") + f" flow, {cfg.objective.flow_target} target"
                   + (f" (its VAE trained first, {VAE_STAGES[variant]:.0%} of the minutes; not in the parameter count)"
                      if variant in VAE_STAGES else "")
                   + ("" if cfg.objective.detail_weight == 1 else f", detail sub-bands weighted {cfg.objective.detail_weight:g}x")
                   + f", {params / 1e6:.1f}M params, {record['minutes']:g} min on one {record.get('device', '')} "
                   f"shared by {trained} runs, {record['data']['cases']} anatomy cases, "
                   f"{'x'.join(map(str, record['data']['roi']))} at 2 mm",
        "trained": {"card": record.get("device", ""), "date": record["date"][:10], "steps": r0["steps"],
                    "micro_batch": cfg.train.micro_batch, "minutes": f"{record['minutes']:g}, "
                    f"{_together(record)} with {trained - 1} other runs" + (" and a given model generating"
                    if record.get("model") else "") + f", {_nets_wording(record)}", "weights": "EMA (max decay 0.999), cast to bf16 for shipping"},
        "commands": [record["command"], f"python benchmarks/pack_pretrained.py {r0['model']} anatomy_2mm --card card_draft.json"],
        "config": f"configs/{run}.yaml of the quality_scale run (variant {variant}; config.json beside the weights)",
        "data": {"set": f"medidiff data anatomy: {record['data']['cases']} cases, seed 0, shape "
                        f"{'x'.join(map(str, record['data']['shape']))}",
                 "manifest": f"build_brats_manifest(name='anatomy', num_folds=4, seed=0); sha256/16 "
                             f"{file_sha256(out / 'manifest.json')[:16]}", "held_out_fold": 0},
        "metrics": {run: m0, "over_seeds": {k: v for k, v in record["summary"].get(variant, {}).items() if v["n"]},
                    "report": "quality_scale.json / report.md of the run"},
        "limits": [f"memorisation audit: {flagged['memorisation_flagged']} of {flagged['memorisation_cases']} generated "
                   "cases flagged", "no SR stage: 2 mm only",
                   "anatomy from one template: brain-like, not patient-like; not a model of real BraTS data"],
    }


def default_realism_cases(generated: int) -> int:
    """The real training and held-out cases the realism phase reads by default: 48, or enough held-out cases
    for the spread check's verdict on ``generated`` cases (it gives none with fewer). Not capped here: the phase
    loads at most the held-out fold, and past it the check says "no verdict"."""
    from medidiff.eval.realism import SPREAD_FLOOR_FACTOR

    return max(48, SPREAD_FLOOR_FACTOR * generated)


def realism_phase(out: Path, done: Sequence[str], n_real: int, first: str) -> float:
    """The realism checks of ``medidiff evaluate``'s image task for every trained run, in this
    process (``quality_common.realism_checks_of``), each in OUT/realism/<run>.json. Returns the
    seconds it took.

    Why: on the 2026-11-30 H200 run the image phase (every real case loaded per run, features,
    MS-SSIM, Frechet) of 4 runs side by side ran past its 3.5-min cap and left nothing; these
    checks took 196 s for the 4 runs against 48 + 48 real cases, done by hand on the GPU host.
    The image phase's own realism (every real case) replaces this one where it finishes. Every run is
    judged on the ``first`` run's grid and on the brain intensity scale (eval_scale_overrides), as
    ``medidiff evaluate`` is, whether or not that run finished; and again on the outside-the-tumour scale
    (normal_brain_scale_overrides, OUT/realism_outside_tumour/: the report's second histogram rows)."""
    t0 = time.perf_counter()
    generated = {run: out / "generated" / run for run in done}
    realism_checks_of(run_config_path(out, first), out / "manifest.json", out / "data", generated, n_real,
                      out / "realism", sets=eval_scale_overrides())
    try:  # the second reading must not lose the phases after it (it scales by each case's labels)
        realism_checks_of(run_config_path(out, first), out / "manifest.json", out / "data", generated, n_real,
                          out / NORMAL_BRAIN_REALISM, sets=normal_brain_scale_overrides())
    except Exception as exc:
        log(f"realism on the outside-the-tumour scale failed: {type(exc).__name__}: {exc}")
    return round(time.perf_counter() - t0, 1)


def memorisation_phase(out: Path, done: Sequence[str], record: dict[str, Any], first: str, *,
                       smoke: bool = False) -> None:
    """The memorisation audit of every trained run in this process (``quality_common.memorisation_audits_of``:
    the real cases loaded and the audit's training side built once), each in OUT/eval/<run>_memorisation/.

    Why: on the 2026-11-30 H200 run six ``medidiff evaluate --tasks memorisation`` side by side each
    loaded all 384 real cases (76 s) and embedded them in 14 forms, and all six ran past the
    phase's 3.5-min cap with nothing recorded."""
    log(f"memorisation: runs {list(done)} in this process")
    def work() -> dict[str, str]:
        memorisation_audits_of(run_config_path(out, first), out / "manifest.json", out / "data",
                               {run: out / "generated" / run for run in done},
                               {run: eval_dir(out, run, "memorisation") for run in done},
                               controls=4 if smoke else None, sets=eval_scale_overrides())
        return {run: "done" for run in done}

    in_process_phase("memorisation", done, record, work)


def in_process_phase(phase: str, done: Sequence[str], record: dict[str, Any], work: Callable[[], dict[str, str]]) -> None:
    """Run an in-process evaluation phase's ``work`` for the runs ``done``; it returns each run's state ("done", or
    "failed: ..."). The states and the phase's seconds go into ``record``, exit 1 where a run failed; a failure of
    the whole phase is logged, marks every run failed and does not lose the phases after it."""
    t0 = time.perf_counter()
    ph = record["eval_phases"][phase]
    try:
        states = work()
    except Exception as exc:
        log(f"{phase} failed: {type(exc).__name__}: {exc}")
        states = {run: f"failed: {exc}" for run in done}
    ph["runs"].update(states)
    if any(state != "done" for state in states.values()):
        record["exits"][phase] = 1
    ph["seconds"] = round(time.perf_counter() - t0, 1)


def image_phase(args: argparse.Namespace, out: Path, done: Sequence[str], record: dict[str, Any], first: str) -> None:
    """The image phase in this process (``quality_common.image_evaluations_of``: the real fold loaded, and its
    realism reference and features built, once for every run), each report in OUT/eval/<run>/report.json, every
    run on the ``first`` run's grid and config (as the realism phase; the brain scale is set on all) with the
    shared feature net and seed 0 (evaluate_command's --seeds 0); no cap (it does less than one evaluation per run
    did). Each run's state is its own: one failing set does not fail the others.

    Why: on the H100 host (session 50) four ``medidiff evaluate --tasks image`` side by side each loaded the
    1536-case fold in 111 s, and three of four were stopped by the 5-minute cap with no Frechet."""
    log(f"evaluate image: runs {list(done)} in this process (the real side built once)")
    record["eval_phases"]["image"]["how"] = "in process"
    in_process_phase("image", done, record, lambda: image_evaluations_of(
        run_config_path(out, first), out / "manifest.json", out / "data", {run: out / "generated" / run for run in done},
        {run: eval_dir(out, run, "image") for run in done}, out / SHARED_NETS["image"],
        sets=[*eval_sets(args, "image"), "eval.seeds=[0]"], device=args.device))


def seed_pick_reading(out: Path, done: Sequence[str], record: dict[str, Any]) -> None:
    """Every recipe with 2+ runs the image phase read (state "done"; a given model counts: it is a seed of its
    recipe): ``seed_pick.pick_by_halves`` on the features that phase kept, into ``record["seed_pick"][variant]``
    (without the per-split rows), or ``{"not read": why}``; nothing here stops the job. Why: two seeds of the
    shipped recipe read 4.9x and 20.4x the Frechet floor (seedspread_h100_20261206): training k seeds and keeping the
    best is a lever, and its pick must be judged on cases it was not picked by."""
    import zipfile

    from seed_pick import pick_by_halves

    read = [run for run in done if record["eval_phases"].get("image", {}).get("runs", {}).get(run) == "done"]
    by_variant: dict[str, list[str]] = {}
    for run in read:
        by_variant.setdefault(record["runs"][run]["variant"], []).append(run)
    for variant, runs in by_variant.items():
        if len(runs) < 2:
            continue
        real_file = eval_dir(out, runs[0], "image").parent / "real_features.npz"  # where image_evaluations_of keeps it
        try:
            real = np.load(real_file)
            features = {run: np.load(eval_dir(out, run, "image") / "features.npz")["synthetic"] for run in runs}
            result = pick_by_halves(features, real["train"], real["heldout"] if real["heldout"].size else None,
                                    splits=100)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            result = {"not read": f"{type(exc).__name__}: {exc}"}
        result.pop("per_split", None)
        record.setdefault("seed_pick", {})[variant] = result


def seed_pick_lines(record: dict[str, Any]) -> list[str]:
    """The report's lines of ``seed_pick_reading``: per recipe, its table or why it was not read."""
    from seed_pick import report

    out = []
    for variant, result in record.get("seed_pick", {}).items():
        out += ["", f"Picking one run of `{variant}` by half of its cases, judged on the other half "
                    f"(`benchmarks/seed_pick.py`):", ""]
        out += [f"not read: {result['not read']}"] if "not read" in result else report(result).splitlines()
    return out


def run_eval_phase(args: argparse.Namespace, out: Path, phase: str, done: Sequence[str], record: dict[str, Any]) -> None:
    """One evaluation phase: ``medidiff evaluate --tasks EVAL_PHASES[phase]`` for every trained run,
    side by side, for at most ``args.eval_minutes`` in all; its exit codes and per-run states
    ("done", "failed, exit N", "stopped at the M-min cap", "not run") go into ``record``."""
    log(f"evaluate {phase} (--tasks {EVAL_PHASES[phase]}): runs {list(done)} side by side, at most "
        f"{args.eval_minutes:g} min")
    t0 = time.perf_counter()
    end = time.monotonic() + 60.0 * args.eval_minutes
    cmds = {f"eval_{run}_{phase}": evaluate_command(args, out, run, phase) for run in done}
    exits = {}
    net = SHARED_NETS[phase] if shares_net(args, phase) else None  # utility with --utility-seeds: none shared
    if net is not None and not (out / net / "config.json").is_file() and cmds:
        # its training failed: evaluations started together would each train the net and write it
        # over one another
        log(f"evaluate: no {net}: the first run trains and saves it first")
        first = next(iter(cmds))
        exits.update(side_by_side({first: cmds.pop(first)}, out / "logs", timeout_s=end - time.monotonic()))
    if cmds and end - time.monotonic() > 0:
        exits.update(side_by_side(cmds, out / "logs", timeout_s=end - time.monotonic(),
                                  envs=gpu_envs(list(cmds), args.gpus)))
    record["exits"].update(exits)
    ph = record["eval_phases"][phase]
    ph["seconds"] = round(time.perf_counter() - t0, 1)
    for run in done:
        code = exits.get(f"eval_{run}_{phase}")
        ph["runs"][run] = ("not run (the phase's cap was spent)" if code is None else "done" if code == 0 else
                           f"stopped at the {args.eval_minutes:g}-min cap" if code == TIMED_OUT else f"failed, exit {code}")


def write_results(record: dict[str, Any], out: Path, done: Sequence[str]) -> None:
    """OUT/quality_scale.json, card_draft.json and report.md from what is on disk now: every run's
    training record and the report of every evaluation phase that finished."""
    per_run: dict[str, dict[str, float]] = {}
    record["run_records"] = {}
    sources: dict[str, str | None] = {}
    bands: dict[str, dict[str, list[float]]] = {}
    left_out: dict[str, list[float]] = {}
    for run in record["runs"]:
        m: dict[str, float] = {}
        path = out / "seeds" / f"{run}.json"
        if path.exists():
            r = json.loads(path.read_text())
            record["run_records"][run] = r
            m.update({k: float(r[k]) for k in ("steps", "steps_per_s", "loss_last_200") if r.get(k) is not None},
                     **r["background"])  # (a --model run has no rate or loss of its own)
        reports = phase_reports(out, run) if run in done else {}
        m.update(eval_metrics(*reports.values()))
        per_run[run] = m
        sources[run] = realism_source(reports)
        if per_band := realism_bands(reports):  # per-band spectrum ratios (the figure of merit the issue states per band)
            bands[run] = per_band
        # the 3D Frechet's left-out figures (a list: kept out of per_run, whose values are means over seeds)
        jack = (reports.get("image") or {}).get("results", {}).get("image", {}).get("distances", {}) \
            .get("synthetic_vs_real_train", {}).get("3d", {}).get("frechet_leave_one_out")
        if jack:
            left_out[run] = jack
    record["per_run"] = per_run
    record["realism_source"] = sources
    record["frechet_leave_one_out"] = left_out
    record["summary"] = {}
    for variant in record["variants"]:
        mine = [per_run[run] for run in summarised_runs(record, variant)]
        keys = sorted({k for m in mine for k in m})
        record["summary"][variant] = {k: summarise_over_seeds([m.get(k, math.nan) for m in mine]) for k in keys}
    record["spectrum_log10_ratio_per_band"] = bands
    write_atomic(out / "quality_scale.json", json.dumps(record, indent=2))
    first = first_trained_run(record)
    if first in record["run_records"]:  # a given model has its card; a variant trained beside it gets one
        write_atomic(out / "card_draft.json", json.dumps(card_draft(record, out, first), indent=2) + "\n")
    else:  # (none trained, or it failed: an earlier job's draft in this folder would describe another model)
        (out / "card_draft.json").unlink(missing_ok=True)
    write_report(record, out)
    log(f"wrote {out / 'quality_scale.json'} and {out / 'report.md'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", type=int, help="anatomy cases (default 384; 8 with --smoke)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per variant, side by side (default %(default)s)")
    ap.add_argument("--variants", nargs="+", default=["x0"], choices=list(VARIANTS),
                    help="recipe variants (VARIANTS), each trained --seeds times, all side by side (default %(default)s)")
    ap.add_argument("--runs", nargs="+", type=parse_run, metavar="VARIANT:SEED",
                    help="the runs as variant and seed pairs instead of --variants x --seeds, e.g. two more seeds "
                         "of the shipped recipe beside one of a variant at a seed they share")
    ap.add_argument("--model", help="an exported model folder (medidiff export, or a shipped one such as "
                    "medidiff/pretrained/anatomy_2mm) evaluated as the first of --runs instead of training it (its "
                    "recipe and seed, whose config it must have been trained with, on this data); the other runs "
                    "train as usual: a control scored by the same nets in the same lease")
    ap.add_argument("--phases", nargs="+", default=DEFAULT_PHASES, choices=["realism", *EVAL_PHASES],
                    help="evaluation phases to run, in order (default: all); realism: the realism checks in this "
                         "process against --realism-cases real cases (fast); image and tissue: medidiff evaluate")
    ap.add_argument("--realism-cases", type=int,
                    help="real training and held-out cases the realism phase compares with (default: 48, or twice "
                         "--generate if more: the spread check gives no verdict with fewer held-out cases than that)")
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget per seed (default %(default)s)")
    ap.add_argument("--generate", type=int, help="cases generated per seed (default 8; 2 with --smoke)")
    ap.add_argument("--tail-steps", type=int, help="every run's cases (a given --model's too): generate --tail-steps N "
                    "(sampler.tail_steps; default: each model's own sampler)")
    # one model read under two samplers, e.g. a given --model's Heun 30 against its Euler 20: the model folder
    # refuses a --set sampler.* other than its training config's (check_model_recipe), so sample through generate
    ap.add_argument("--sampler", choices=("ddpm", "ddim", "euler", "heun"),
                    help="every run's cases (a given --model's too): generate --sampler NAME (default: each model's own)")
    from seed_pick import positive_int  # beside this script, as seed_pick_reading's import

    ap.add_argument("--steps", type=positive_int,  # 0 would read as unset and sample with each model's own
                    help="every run's cases: generate --steps N (default: each model's own)")
    # a run picked by its Frechet on case seeds 0.. reads optimistically on them: a reading free of the pick draws
    # other cases (and its left-out figures then pair with no earlier job's)
    ap.add_argument("--case-seed", type=int, default=0,
                    help="every run's first case seed (generate --seed; default 0: the cases earlier jobs drew)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every seed, e.g. train.deepspeed=zero1 (repeatable)")
    ap.add_argument("--eval-epochs", type=int, help="most epochs of the feature net and tissue segmenter (default 10; 1 with --smoke)")
    ap.add_argument("--eval-steps", type=int, help="hard cap on their optimiser steps (default none; 2 with --smoke)")
    ap.add_argument("--nets-after", action="store_true",
                    help="train the evaluation's feature net and tissue segmenter after the runs, not beside them "
                         "(one run alone on a card: the nets beside it halved its steps)")
    ap.add_argument("--one-at-a-time", action="store_true",
                    help="train the runs in turn, each alone on the card, not side by side: each run's steps/s is its own "
                         "(two graphed runs side by side made 22.2 steps/s each, 48.3 alone), but each compiles "
                         "alone, so it is slower below ~20 000 steps a run; cap each with --set train.max_steps=N; "
                         "implies --nets-after")
    ap.add_argument("--nets", help="a folder with feature_net/ and tissue_net/ trained by an earlier run on the same "
                                   "data (device_session.sh brings them back in nets.tgz): used instead of training them")
    ap.add_argument("--eval-real", type=int, default=192,
                    help="real training and held-out cases each for fidelity and tissue (eval.max_real, a seeded "
                         "subset; 0 = all) and for the image phase's realism checks (eval.realism_max_real: its "
                         "Frechet reads every real case); memorisation always sees every training case "
                         "(default %(default)s)")
    ap.add_argument("--mask-source", metavar="RUN",
                    help="mask-conditioned runs generate for this run's generated labels (the two-stage recipe; a run "
                         "of --runs that generates labels, e.g. the --model one), not the first training cases' masks")
    ap.add_argument("--utility-seeds", type=int, nargs="+",
                    help="the utility phase's segmenter seeds, every segmenter (the all-real one too) trained in the "
                         "phase at --eval-epochs: a plateau reading (default: seed 0, the shared feature net as the "
                         "all-real segmenter)")
    ap.add_argument("--eval-minutes", type=float, default=6.0,
                    help="most wall time of each `medidiff evaluate` phase (fidelity, tissue, utility; image without a "
                         "shared feature net); evaluations still running then are stopped and reported missing "
                         "(default %(default)s)")
    ap.add_argument("--workers", type=int, help="processes writing the data set (default: the CPU count, at most 32)")
    ap.add_argument("--device", default="cuda", help="cuda (whichever card CUDA_VISIBLE_DEVICES shows) or cpu")
    ap.add_argument("--gpus", type=int, default=1,
                    help="cards the runs, shared nets and evaluations are spread over, round-robin (default %(default)s)")
    ap.add_argument("--smoke", action="store_true", help="tiny cases, 2 steps, tiny evaluation: checks it runs (CPU)")
    ap.add_argument("--run", help=argparse.SUPPRESS)  # internal: one training run's process
    ap.add_argument("--shared-net-run", choices=sorted(SHARED_NETS.values()), help=argparse.SUPPRESS)  # internal
    args = ap.parse_args()
    p = dict(SMOKE if args.smoke else FULL)
    p["cases"] = args.cases or (8 if args.smoke else 384)
    args.generate = args.generate or (2 if args.smoke else 8)
    if args.realism_cases is None:  # (an explicit 0 is refused below)
        args.realism_cases = default_realism_cases(args.generate)
    args.eval_epochs = args.eval_epochs or (1 if args.smoke else 10)
    args.eval_steps = args.eval_steps or (2 if args.smoke else None)
    workers = args.workers or min(os.cpu_count() or 1, 32)
    for name, v in (("--cases", p["cases"]), ("--seeds", args.seeds), ("--generate", args.generate), ("--gpus", args.gpus),
                    ("--eval-epochs", args.eval_epochs), ("--workers", workers)):
        if v < 1:
            ap.error(f"{name} must be >= 1, got {v}")
    if args.case_seed < 0:
        ap.error(f"--case-seed must be >= 0, got {args.case_seed}")
    if args.gpus > 1:
        if args.device != "cuda":
            ap.error(f"--gpus {args.gpus} needs --device cuda, got {args.device}")
        try:
            gpu_envs(["probe"], args.gpus)
        except ValueError as e:
            ap.error(str(e))
        import torch

        if torch.cuda.device_count() < args.gpus:  # without CUDA_VISIBLE_DEVICES gpu_envs assumes 0..N-1
            ap.error(f"--gpus {args.gpus}: this machine shows {torch.cuda.device_count()} CUDA device(s)")
    if args.realism_cases < 2:  # the checks' floor is the spread of the real cases
        ap.error(f"--realism-cases must be >= 2, got {args.realism_cases}")
    for name, v in (("--minutes", args.minutes), ("--eval-minutes", args.eval_minutes)):
        if v <= 0:
            ap.error(f"{name} must be > 0, got {v}")
    out = Path(args.out).absolute()
    if len(set(args.variants)) != len(args.variants):
        ap.error(f"--variants names one twice: {args.variants}")
    if args.runs:
        if len(set(args.runs)) != len(args.runs):
            ap.error(f"--runs names one twice: {[f'{v}:{s}' for v, s in args.runs]}")
        args.variants = list(dict.fromkeys(v for v, _ in args.runs))  # the summary's variants, in --runs order
    if args.model and not args.runs:
        ap.error("--model is the first of --runs VARIANT:SEED (its recipe and seed); give --runs")
    runs = runs_of(args)
    if args.mask_source is not None and args.mask_source not in runs:
        ap.error(f"--mask-source {args.mask_source}: not one of the runs ({', '.join(runs)})")
    if args.mask_source is not None and mask_conditioned(runs[args.mask_source][0]):
        ap.error(f"--mask-source {args.mask_source}: a mask-conditioned run generates no labels of its own")
    if args.run is not None:
        run_one(args, out, args.run)
        return 0
    if args.shared_net_run:
        run_shared_net(args, out, args.shared_net_run)
        return 0

    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "run": "quality_scale", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "data": dict(p), "workers": workers,
        "seeds": sorted({s for _, s in runs.values()}), "variants": list(args.variants),
        "runs": {run: {"variant": v, "seed": s} for run, (v, s) in runs.items()}, "phases": list(args.phases),
        "realism_cases": args.realism_cases,
        "minutes": args.minutes, "generate": args.generate, "overrides": args.overrides,
        "eval_epochs": args.eval_epochs, "utility_seeds": args.utility_seeds, "mask_source": args.mask_source, "eval_steps": args.eval_steps, "eval_minutes": args.eval_minutes,
        "eval_real": args.eval_real, "image_whole_fold": True, "arm": ARM, "nets_after": args.nets_after,
        "gpus": args.gpus, "one_at_a_time": args.one_at_a_time,
        "model": str(Path(args.model).absolute()) if args.model else None,
        **device_info(args.device),
    }
    resolve_configs(args, p, out)
    if args.model:
        check_model_recipe(Path(args.model).absolute(), run_config_path(out, next(iter(runs))))
    log(f"data: {p['cases']} anatomy cases {p['shape']} in {workers} processes")
    record["data_seconds"] = round(make_anatomy_data(out, p, workers=workers), 1)
    log(f"data: done in {record['data_seconds']} s")
    if args.model:
        check_model_data(Path(args.model).absolute(), out / "manifest.json")
    record["real"] = real_scores(out, p, args.generate)
    me = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--minutes", str(args.minutes), "--device",
          args.device, "--generate", str(args.generate), "--seeds", str(args.seeds), "--variants", *args.variants,
          *(["--runs", *(f"{v}:{s}" for v, s in args.runs)] if args.runs else []),
          *(["--model", str(Path(args.model).absolute())] if args.model else []), "--eval-epochs", str(args.eval_epochs), *(["--smoke"] if args.smoke else []),
          *(["--mask-source", args.mask_source] if args.mask_source else []),
          *(["--eval-steps", str(args.eval_steps)] if args.eval_steps else []),
          *(["--tail-steps", str(args.tail_steps)] if args.tail_steps is not None else []),
          *(["--case-seed", str(args.case_seed)] if args.case_seed else []),
          *(["--sampler", args.sampler] if args.sampler else []), *(["--steps", str(args.steps)] if args.steps else [])]
    nets = list(dict.fromkeys(SHARED_NETS[phase] for phase in args.phases if shares_net(args, phase)))  # each once
    record["nets_reused"] = reused = reuse_nets(args.nets, nets, out) if args.nets else []
    record["nets_trained"] = nets = [net for net in nets if net not in reused]
    log(f"train: {len(runs)} runs ({', '.join(runs)}) {_together(record)} for at most {args.minutes} min each (or train.max_steps)"
        + (f" ({next(iter(runs))} given, only generating)" if args.model else "") + f", {_nets_wording(record)}")
    t0 = time.perf_counter()
    run_cmds = {run: [*me, "--run", run] for run in runs}
    net_cmds = {net: [*me, "--shared-net-run", net] for net in nets}
    groups = training_groups(run_cmds, net_cmds, nets_after=args.nets_after, one_at_a_time=args.one_at_a_time)
    exits: dict[str, int] = {}
    for group in groups:
        if group:
            exits |= side_by_side(group, out / "logs", envs=gpu_envs(list(group), args.gpus))
    record["train_phase_seconds"] = round(time.perf_counter() - t0, 1)
    done = [run for run in runs if exits[run] == 0]
    for run in done:
        r = json.loads((out / "seeds" / f"{run}.json").read_text())
        loss = "n/a" if r["loss_last_200"] is None else f"{r['loss_last_200']:.4f}"  # (None: a --model run)
        log(f"{run}: {r['steps']} steps ({r['steps_per_s']}/s), loss {loss}, background RMS "
            f"{r['background']['background_rms']:.4f}, speckle {r['background']['speckle']:.5f}")
    record["exits"] = exits
    record.update({net: str(out / net) for net in SHARED_NETS.values()})
    record["eval_phases"] = {phase: {"tasks": EVAL_PHASES[phase], "seconds": None,
                                     "runs": {run: "not finished" for run in done}} for phase in args.phases
                             if phase in EVAL_PHASES}
    for run in done:
        comparison_figure(sorted(d for d in (out / "generated" / run).iterdir() if d.is_dir())[:4],
                          held_out_cases(out, 4), out / f"{run}_vs_real.png")
    write_results(record, out, done)  # training's results land before any evaluation runs
    for phase in args.phases:
        if phase == "realism":
            if done:
                record["realism_seconds"] = realism_phase(out, done, args.realism_cases, next(iter(runs)))
        elif phase == "memorisation":
            if done:
                memorisation_phase(out, done, record, next(iter(runs)), smoke=args.smoke)
        elif phase == "image" and done and (out / SHARED_NETS["image"] / "config.json").is_file():
            image_phase(args, out, done, record, next(iter(runs)))
            seed_pick_reading(out, done, record)
        else:  # (the image phase without a feature net: the first evaluation trains it, as evaluate does)
            run_eval_phase(args, out, phase, done, record)
        write_results(record, out, done)
    print((out / "report.md").read_text(), flush=True)
    return 0 if not any(record["exits"].values()) else 1


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
