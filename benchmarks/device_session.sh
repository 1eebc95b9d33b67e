#!/usr/bin/env bash
# One GPU session's work as a single background job, so no stage is cut at a device call's
# 10-minute limit: `start` installs the missing wheels and launches the job in its own process
# session (setsid survives the call's end), then waits like `wait`; `wait` follows the job for up
# to WAIT_S seconds and packs what exists so far into $OUT/results.tgz (logs, JSON, PNG, metrics;
# no NIfTI volumes or weights). Chain `wait` calls until the log says "JOB DONE".
#
#   start: run benchmarks/device_session.sh start      (carry .whl; see ../shared/gpu/fetch-wheels)
#   then:  run benchmarks/device_session.sh wait
#   then:  run benchmarks/device_session.sh fetch x0_detail100_seed0 ...   (trained models, bf16, in parts)
#   or:    FETCH=all (or FETCH="RUN...") on `wait`: each call after the runs are exported fetches them too
#
# The job (TASK=gpu_run, the default): the end-to-end run (benchmarks/gpu_run.py, extra arguments
# in GPU_RUN_ARGS, e.g. "--compile") and then, unless UNET=0, the UNet benchmarks of issue 4.
# TASK=ablation: benchmarks/quality_ablation.py (arguments in ABLATION_ARGS, e.g. "--minutes 6").
# TASK=loop: benchmarks/loop_bench.py on the shipped and the fastest config (issue 15), profiled.
# TASK=scaling: benchmarks/scaling_bench.py (issue 19; arguments in SCALING_ARGS).
# TASK=sampling: the GPU sampler test, cascade_bench's step-count fit and sr_loader_bench (issue 15).
# TASK=generate_write: generate_write_bench.py on the shipped model (writer threads against one).
# TASK=quality_cascade: benchmarks/quality_cascade.py (issue 16's SR stage; arguments in CASCADE_ARGS).
# TASKS="quality_scale paired": then benchmarks/paired_contrast.py on the job's mask-conditioned models.
# TASKS=quality_scale_paired: the same, the paired reading beside quality_scale's evaluation phases (fits 30 min).
# TASKS="loop ablation" runs several in order; PAR_TASKS="loop=0 quality_scale=1" runs tasks side by
# side, one per GPU, before TASKS.
# Environment variables reach the job when given to `start` (`TASK=ablation bash ... start`).
# A warm machine is released 30 s after a call ends (`status`: idle_release_s): make the next `wait` call at
# once, with nothing between the calls; a later call finds a fresh machine and the job gone (two leases lost so).
# The job runs from a copy of the tree in /tmp/repo: every device call replaces the carried tree,
# which would pull the files from under a job started there.
set -u
# JOB and REPO under /tmp unless the tests set DEVICE_SESSION_JOB / DEVICE_SESSION_REPO (names nothing else sets: `start` empties REPO)
JOB=${DEVICE_SESSION_JOB:-/tmp/job}
WAIT_S=${WAIT_S:-560}
REPO=${DEVICE_SESSION_REPO:-/tmp/repo}

# The fastest configuration (issue 15): one modality (8 x 64^3 latent), batch 8, pixel norm,
# additive skips, blocks 1 2 2 4 4, CUDA graphs: the net alone reached 189.9 vol/s.
FAST="--set data.modalities=[t1n] --set conditioning.generate_labels=false --set net.channels=[64,128,128,256,256]
 --set net.num_res_blocks=[1,2,2,4,4] --set net.norm=pixel --set net.skip=add --set net.resample=patch
 --set train.micro_batch=8 --set train.compile=true --set train.compile_mode=reduce-overhead"

loop_task() {
    # Each run: the loop through train_diffusion, then the net alone (and MONAI's with --monai).
    local lb="python3 benchmarks/loop_bench.py --steps ${LOOP_STEPS:-300} --profile-steps 10"
    mkdir -p $JOB/loop
    run_loop() {  # name, then loop_bench arguments
        local name=$1; shift
        echo "== loop: $name $(date -u +%FT%TZ)"
        $lb "$@" --out $JOB/loop/$name.json
    }
    # LOOP_RUNS picks and orders them (default: all); MONAI=1 adds MONAI's net to the --monai rows
    local monai=""; [ "${MONAI:-1}" = 1 ] && monai="--monai"
    # the no-sync GPU tests of what the loops run each step (seconds): SR label downsampling, loss weights
    echo "== loop: gpu tests $(date -u +%FT%TZ)"
    python3 -m pytest tests/data/test_labels.py tests/objectives -m gpu -q -p no:cacheprovider
    for name in ${LOOP_RUNS:-shipped shipped_compiled shipped_b1 shipped_zero1 fast_none}; do
        # shellcheck disable=SC2086  # FAST and $monai are lists of words
        case $name in
            shipped) run_loop shipped $monai --work /tmp/lb_shipped ;;  # as shipped: engine none, micro-batch 4, 4 workers
            shipped_zero1) run_loop shipped_zero1 --set train.deepspeed=zero1 --work /tmp/lb_shipped ;;
            shipped_compiled) run_loop shipped_compiled --set train.compile=true --work /tmp/lb_shipped ;;
            # GroupNorm on CUDA (torch 2.11) returns channels-first: ~40 layout copies a step at the
            # shipped settings (1 with pixel norm; pytorch #111824, NHWC kernels in #191945); eager pixel
            # norm was slower at batch 1 (loop_h200x2_shared_20261130)
            shipped_pixel) run_loop shipped_pixel --set net.norm=pixel --work /tmp/lb_shipped ;;
            # the shipped net at micro-batch 1 without loader workers (shipped until session 7): host-bound,
            # 31 ms of kernels in a 110 ms step (loop_h200_quiet_20261130)
            shipped_b1) run_loop shipped_b1 --set train.micro_batch=1 --set data.num_workers=0 --work /tmp/lb_shipped ;;
            mask_flow) run_loop mask_flow --config configs/mask_flow.yaml $monai --work /tmp/lb_mask ;;
            # wavelet_flow ships micro-batch 4 since session 7 (0.96 of its net vs 0.44 at 1): the same for mask_flow?
            mask_flow_b4) run_loop mask_flow_b4 --config configs/mask_flow.yaml --set train.micro_batch=4 \
                --set data.num_workers=4 --work /tmp/lb_mask ;;
            # the SR stage's loop on 96^3 training patches of 240x240x160 phantoms (a "volume" is a patch)
            cascade_sr) run_loop cascade_sr --config configs/cascade_sr.yaml $monai --work /tmp/lb_sr ;;
            # the other shipped configs as shipped (issue 15: a figure for each through medidiff train);
            # text_flow with a random encoder of CLIP-L's text size (loop_bench writes it); vae_ldm with a random
            # VAE of vae.yaml's size (the vae_ldm rows below)
            text_flow) run_loop text_flow --config configs/text_flow.yaml $monai --work /tmp/lb_text ;;
            # text_flow and cascade_sr missed 0.8 of their nets (0.68, 0.55: small steps the host launches,
            # loop_h200_20261201): micro-batch 4 lifted wavelet_flow from 0.50 to 0.96; CUDA graphs the anatomy loop
            text_flow_b4) run_loop text_flow_b4 --config configs/text_flow.yaml --set train.micro_batch=4 \
                --set data.num_workers=4 --work /tmp/lb_text ;;
            text_flow_graphs) run_loop text_flow_graphs --config configs/text_flow.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --work /tmp/lb_text ;;
            cascade_sr_graphs) run_loop cascade_sr_graphs --config configs/cascade_sr.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --work /tmp/lb_sr ;;
            # with graphs the SR loop waits for its loader (104.5 vol/s through 4 workers vs the net's 168.7,
            # loop_h200_20261201d); a window item costs ~3 ms in process, a batch ~6x that through a worker:
            # more workers, or the windows cut in the main thread while the graph runs
            cascade_sr_graphs_w8) run_loop cascade_sr_graphs_w8 --config configs/cascade_sr.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --set data.num_workers=8 --work /tmp/lb_sr ;;
            cascade_sr_graphs_w0) run_loop cascade_sr_graphs_w0 --config configs/cascade_sr.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --set data.num_workers=0 --work /tmp/lb_sr ;;
            # loader-bound still with the syncs gone (95.4 vol/s through 4 workers vs the net's 170.7, 0.44 of it,
            # loop_h200_20261201e): the whole cases held on the device and the windows cut there (153.5, 0.85,
            # loop_h200_20261201f; cascade_sr.yaml ships data_on_device: auto since)
            cascade_sr_dev) run_loop cascade_sr_dev --config configs/cascade_sr.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --set train.data_on_device=true --work /tmp/lb_sr ;;
            # text_flow with graphs spent 8.3 ms a step pinning and moving its batch in the main thread
            text_flow_graphs_w2) run_loop text_flow_graphs_w2 --config configs/text_flow.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --set data.num_workers=2 --work /tmp/lb_text ;;
            # with 2 workers 0.78 of its net, the loader alone 1.13x the net (loop_h200_20261201e); its pipeline
            # has no random step (flip_prob 0), so the whole set fits on the card (45.2, 0.99, loop_h200_20261201f)
            text_flow_dev) run_loop text_flow_dev --config configs/text_flow.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --set train.data_on_device=true --work /tmp/lb_text ;;
            vae) run_loop vae --config configs/vae.yaml $monai --work /tmp/lb_vae ;;
            # vae_ldm as shipped: its loop encodes each batch with the VAE (a random one of vae.yaml's size);
            # the same with the latents cached first (latent.cache, README's LDM steps) is a later row
            vae_ldm) run_loop vae_ldm --config configs/vae_ldm.yaml $monai --work /tmp/lb_ldm ;;
            # README's LDM steps: the latents encoded once (medidiff latents encode), the loop reads the cache
            vae_ldm_cache) run_loop vae_ldm_cache --config configs/vae_ldm.yaml --latent-cache $monai --work /tmp/lb_ldm_cache ;;
            # both rows above reach 0.92-0.93 of a net that is itself launch-bound eager (1163 launches, 21 ms of
            # GPU work a step, loop_h200_20261201g); what made the other small-step configs fast: CUDA graphs and
            # the set held on the card (its flips replayed there); the VAE still encodes each batch
            vae_ldm_fast) run_loop vae_ldm_fast --config configs/vae_ldm.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --set train.data_on_device=auto --work /tmp/lb_ldm ;;
            # vae ships zero2 and no loader workers: DeepSpeed's 3.2 device syncs (23.6 ms) and 170 DtoD
            # copies a step, and MONAI transforms on the main thread (loop_h200_20261201); the plain engine
            vae_none) run_loop vae_none --config configs/vae.yaml --set train.deepspeed=none --set data.num_workers=4 \
                --work /tmp/lb_vae ;;
            anatomy) run_loop anatomy --config configs/anatomy_2mm.yaml $monai --work /tmp/lb_anatomy ;;
            # the anatomy step is host-bound in launches (857 a step eager, 651 compiled; backward 33-40 ms of
            # host time, loop_h200_20261201): CUDA graphs of the net's forward and backward (reduce-overhead)
            # cut them to 107, and the loop then waited 38 ms a step for its loader (loop_h200_20261201b; uint8
            # masks and shared-memory collation since); 32 cases as the training set's memory cache
            anatomy_graphs) run_loop anatomy_graphs --config configs/anatomy_2mm.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --cases 32 --work /tmp/lb_anatomy32 ;;
            # the same with the training set held on the device (train.data_on_device): no loader work a step
            anatomy_dev) run_loop anatomy_dev --config configs/anatomy_2mm.yaml --set train.compile=true \
                --set train.compile_mode=reduce-overhead --set train.data_on_device=true --cases 32 --work /tmp/lb_anatomy32 ;;
            anatomy_dev_eager) run_loop anatomy_dev_eager --config configs/anatomy_2mm.yaml \
                --set train.data_on_device=true --cases 32 --work /tmp/lb_anatomy32 ;;
            anatomy_pixel) run_loop anatomy_pixel --config configs/anatomy_2mm.yaml --set net.norm=pixel \
                --set train.compile=true --work /tmp/lb_anatomy_pixel ;;  # its own folder: two GPUs may write at once
            wdm3d) run_loop wdm3d --config configs/wdm3d_reference.yaml $monai --cases 20 --work /tmp/lb_wdm ;;  # micro-batch 10
            fast_zero1) run_loop fast_zero1 $FAST --set data.num_workers=4 --set train.deepspeed=zero1 --work /tmp/lb_fast ;;
            fast_none) run_loop fast_none $FAST --set data.num_workers=4 --set train.deepspeed=none $monai --work /tmp/lb_fast ;;
            # the fast loop reached 37.9 % of the measured matmul peak at batch 8 (goal 40 %): a fuller card
            fast_b16) run_loop fast_b16 $FAST --set train.micro_batch=16 --set data.num_workers=6 --set train.deepspeed=none \
                --cases 16 --work /tmp/lb_fast16 ;;
            *) echo "unknown loop run $name" ;;
        esac
    done
}

# PAR_TASKS="loop=0 loop2=1": a second list of loop runs on another GPU (LOOP2_RUNS), logged to loop2.log
loop2_task() {
    LOOP_RUNS=${LOOP2_RUNS:?set LOOP2_RUNS} loop_task
}

ablation_task() {
    echo "== quality_ablation $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086  # ABLATION_ARGS is a list of words
    python3 benchmarks/quality_ablation.py --out $JOB/ablation ${ABLATION_ARGS:-}
    echo "== quality_ablation exit $? $(date -u +%FT%TZ)"
}

# TASKS=quality_scale: issue 16's seeds run (benchmarks/quality_scale.py; arguments in QUALITY_ARGS,
# e.g. "--minutes 8 --set train.deepspeed=zero1"); seed 0's model stays in $JOB/quality_scale/models/seed0.
# Its evaluation nets come back in nets.tgz: unpack it into the tree's .nets/ (git ignores it), carry
# ".nets" and add "--nets .nets" to QUALITY_ARGS in the next session (same data: --cases and seed)
quality_scale_task() {
    # its training processes and evaluations share the host with a loop benchmark on the other GPU:
    # a few CPU threads each (torch takes every core by default)
    local -x OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}  # this task only: later tasks keep their own threads
    echo "== quality_scale $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086  # QUALITY_ARGS is a list of words
    python3 benchmarks/quality_scale.py --out $JOB/quality_scale ${QUALITY_ARGS:-}
    echo "== quality_scale exit $? $(date -u +%FT%TZ)"
}

# TASKS="quality_scale quality_scale2": a second quality_scale job after the first, in its own folder
# ($JOB/quality_scale2, arguments in QUALITY_ARGS2) on the first one's data (linked, not written again: same
# --cases): e.g. a given model's evaluation after a trained variant's, in one lease without the idle gap
# between two `start` calls. FETCH and nets.tgz read the first job's folder; "--nets /tmp/job/quality_scale" in
# QUALITY_ARGS2 reuses the nets the first job trained (same data, so the same manifest). quality_scale3
# (QUALITY_ARGS3, $JOB/quality_scale3) is a third: e.g. a model a later `wait` call carries and copies to /tmp
# while the first two run (a call carries 64 MiB: the wheels and one 23 MB model, with the tracked shipped model
# moved out of the tree for the call).
quality_scale_next_task() {  # N: the job in $JOB/quality_scaleN with QUALITY_ARGSN
    local -x OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}  # this task only: later tasks keep their own threads
    local n=${1:?the job number} q=$JOB/quality_scale$1 args_var=QUALITY_ARGS$1
    mkdir -p "$q"
    if [ -f "$JOB/quality_scale/data/anatomy.json" ]; then
        ln -sfn "$JOB/quality_scale/data" "$q/data" && ln -sf "$JOB/quality_scale/manifest.json" "$q/manifest.json"
    fi
    echo "== quality_scale$n $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086  # QUALITY_ARGSN is a list of words
    python3 benchmarks/quality_scale.py --out "$q" ${!args_var:-}
    echo "== quality_scale$n exit $? $(date -u +%FT%TZ)"
}
quality_scale2_task() { quality_scale_next_task 2; }
quality_scale3_task() { quality_scale_next_task 3; }

# TASKS="quality_scale paired": benchmarks/paired_contrast.py on every mask-conditioned model the quality_scale job
# trained and exported: PAIRED_NUM (default 32) cases for the training folds' real masks, each against the real case
# its mask came from (quality_scale_h200_20261204f's t2f overshoot was read unpaired, on generated labels), and the
# same reading of a perfect generator (--control) in paired/<run>/control/: what the reading gives when nothing is wrong
paired_task() {
    local q=$JOB/quality_scale model run
    for model in "$q"/models/*maskcond*; do
        [ -f "$model/model.safetensors" ] || continue
        run=$(basename "$model")
        echo "== paired $run $(date -u +%FT%TZ)"
        python3 benchmarks/paired_contrast.py --model "$model" --config "$q/configs/$run.yaml" \
            --manifest "$q/manifest.json" --root "$q/data" --num "${PAIRED_NUM:-32}" --device "${PAIRED_DEVICE:-cuda}" --out "$JOB/paired/$run"
        echo "== paired $run exit $? $(date -u +%FT%TZ)"
        # the reading's floor on the same masks and pipeline: a perfect generator (paired_control_cpu_20261205)
        mkdir -p "$JOB/paired/$run"  # (the model's reading may have failed before making it)
        python3 benchmarks/paired_contrast.py --control --config "$q/configs/$run.yaml" --manifest "$q/manifest.json" \
            --root "$q/data" --num "${PAIRED_NUM:-32}" --out "$JOB/paired/$run/control" > "$JOB/paired/$run/control.log" 2>&1
        echo "== paired $run control exit $? $(date -u +%FT%TZ)"
    done
}

# TASKS=quality_scale_paired: the two above side by side, so both fit one session's device time: quality_scale in
# the background and the paired task as soon as its models are exported (its quality_scale.json is written after
# training, export and generation, before the evaluation phases), beside those phases on the same card (memory is
# no bar: ~20 GiB of 139), logging to $JOB/paired.log. In session 39 the two in order needed ~31 min of a 30-min
# budget and the paired reading was the part lost.
quality_scale_paired_task() {
    local mark=$JOB/.quality_scale_started
    touch "$mark"
    quality_scale_task &
    local qs=$!
    # a quality_scale.json older than this task is an earlier job's (another start in the same lease)
    until [ "$JOB/quality_scale/quality_scale.json" -nt "$mark" ]; do
        kill -0 $qs 2>/dev/null || break
        sleep 10
    done
    if [ "$JOB/quality_scale/quality_scale.json" -nt "$mark" ]; then
        echo "== paired (beside quality_scale's evaluation) $(date -u +%FT%TZ)"
        paired_task >"$JOB/paired.log" 2>&1
        echo "== paired done $(date -u +%FT%TZ)"
    else
        echo "== paired: quality_scale ended before exporting its models"
    fi
    wait $qs
}

# TASKS=quality_cascade: issue 16's SR stage on full-resolution anatomy behind the shipped base
# (benchmarks/quality_cascade.py; arguments in CASCADE_ARGS, e.g. "--minutes 7 --variants shipped")
quality_cascade_task() {
    local -x OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}  # this task only: later tasks keep their own threads
    echo "== quality_cascade $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086  # CASCADE_ARGS is a list of words
    python3 benchmarks/quality_cascade.py --out $JOB/quality_cascade ${CASCADE_ARGS:-}
    echo "== quality_cascade exit $? $(date -u +%FT%TZ)"
}

gpu_run_task() {
    echo "== gpu_run $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086  # GPU_RUN_ARGS is a list of words
    python3 benchmarks/gpu_run.py --out $JOB/gpu_run --stage all --quiet ${GPU_RUN_ARGS:-}
    echo "== gpu_run exit $? $(date -u +%FT%TZ)"
    python3 benchmarks/gpu_run.py --out $JOB/gpu_run --stage plot
    if [ "${UNET:-1}" = 0 ]; then return; fi
    local ub="python3 benchmarks/unet_bench.py --steps 8 --med-res-blocks 1 2 2 4 4 --skip add"
    echo "== unet A (GroupNorm, parameter-matched to MONAI) $(date -u +%FT%TZ)"
    $ub --variants monai_autocast med_compiled_autocast monai_compiled --out $JOB/unet_A_group.json
    echo "== unet B (pixel norm) $(date -u +%FT%TZ)"
    $ub --norm pixel --variants monai_autocast med_compiled_autocast big_checkpointed --out $JOB/unet_B_pixel.json
    echo "== unet C (pixel norm, CUDA graphs) $(date -u +%FT%TZ)"
    $ub --norm pixel --compile-mode reduce-overhead --variants monai_autocast med_compiled_autocast \
        --out $JOB/unet_C_pixel_cudagraphs.json
}

scaling_task() {
    # issue 19 on this host's GPUs (2 on nvidia-h200-x2; SCALING_ARGS="--gpus 4 --gpu-counts 1 2 4" on 4)
    echo "== scaling $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086  # SCALING_ARGS is a list of words
    python3 benchmarks/scaling_bench.py --out $JOB/scaling ${SCALING_ARGS:-}
    echo "== scaling exit $? $(date -u +%FT%TZ)"
}

sampling_task() {
    # issue 15, deliverables 5 and 6: the no-sync DDPM test, DDPM vs Euler per step (fit over 3
    # step counts), and the SR loader's windows against whole cases
    mkdir -p $JOB/sampling
    echo "== sampling: gpu tests $(date -u +%FT%TZ)"
    python3 -m pytest tests/samplers -m gpu -q -p no:cacheprovider
    echo "== sampling: cascade_bench $(date -u +%FT%TZ)"
    python3 benchmarks/cascade_bench.py --device cuda --steps 10 20 30 --profile --out $JOB/sampling/cascade.json
    # the full case took 3.45 s at 30+30 eager (goal 2 s): the same with every UNet block compiled
    [ "${SAMPLING_COMPILE:-1}" = 1 ] && python3 benchmarks/cascade_bench.py --device cuda --steps 10 20 30 --compile \
        --out $JOB/sampling/cascade_compiled.json
    echo "== sampling: sr_loader_bench $(date -u +%FT%TZ)"
    python3 benchmarks/sr_loader_bench.py --device cuda --out $JOB/sampling/sr_loader.json
    echo "== sampling done $(date -u +%FT%TZ)"
}

# TASKS=generate_write (first, e.g. TASKS="generate_write quality_scale"): `medidiff generate` with the shipped model
# at 30 steps, one writer thread (each batch written after it is sampled, as before session 48) against the default
# writer threads, native and BraTS grids (benchmarks/generate_write_bench.py, 16 cases a row; 96 s on the H100 in
# session 49): the end-to-end rate beside the sampling-only figures (results/generate_write_cpu_20261206 measured
# the writes on 2 CPU cores only); GW_ARGS: more arguments (e.g. "--batch 1 --writers 4 8 --geometries brats";
# "--batch 1 8 --geometries native" compares the batch sizes within one call)
generate_write_task() {
    echo "== generate_write $(date -u +%FT%TZ)"
    mkdir -p $JOB/generate_write
    # shellcheck disable=SC2086  # GW_ARGS is a list of words
    python3 benchmarks/generate_write_bench.py --model anatomy-2mm --device cuda --steps 30 --num ${GW_NUM:-16} \
        --batch 8 --out $JOB/generate_write/write.json ${GW_ARGS:-}
    echo "== generate_write exit $? $(date -u +%FT%TZ)"
}

# TASKS=gputests (first, e.g. TASKS="gputests quality_scale"): every test module with GPU tests, -m gpu, into
# the job's log (a failure does not stop the tasks after it). tests/test_bundle.py is not among them: the GPU
# image lacks jsonschema, and collecting every module would stop at its import.
gputests_task() {
    echo "== gputests $(date -u +%FT%TZ)"
    python3 -m pytest tests/latents/test_haar.py tests/objectives tests/data/test_labels.py tests/samplers \
        tests/training/test_compiled_resume_gpu.py -m gpu -q -p no:cacheprovider -p no:logging -rfE 2>&1 | grep -v '^DEBUG'
    echo "== gputests exit ${PIPESTATUS[0]} $(date -u +%FT%TZ)"
}

# TASKS=resume (after PAR_TASKS, on both GPUs of an x2 host): issue 19's resume on another GPU count
# through DeepSpeed's universal checkpoint in bf16 (ZeRO-2 stopped on 2 GPUs, a copy resumed on 1:
# the fused AdamW's step counters and the module buffers after the load), and the objectives' GPU
# tests (regression_loss's channel weights without a host sync)
resume_task() {
    echo "== resume: gpu tests $(date -u +%FT%TZ)"
    python3 -m pytest tests/objectives -m gpu -q -p no:cacheprovider
    echo "== resume: preemption_bench $(date -u +%FT%TZ)"
    python3 benchmarks/preemption_bench.py --gpus 2 --resume-gpus 1 --stages 2 --steps 40 --signal-at 15 \
        --out $JOB/resume
    echo "== resume done $(date -u +%FT%TZ)"
}

job() {
    export PYTHONPATH=/tmp/site:$REPO PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0
    cd "$REPO" || exit 1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    # FIRST_TASKS in order on every GPU; then PAR_TASKS="loop+sampling=0 quality_scale=1": tasks
    # side by side, each GPU's (joined by +) in order on it, logging to $JOB/<task>.log; then TASKS
    # (default gpu_run; TASKS="" runs none) in order, on every GPU.
    for task in ${FIRST_TASKS:-}; do
        "${task}_task"
    done
    for spec in ${PAR_TASKS:-}; do
        (export CUDA_VISIBLE_DEVICES=${spec#*=}
         for task in $(echo "${spec%=*}" | tr + ' '); do
             "${task}_task" >"$JOB/${task}.log" 2>&1
             echo "== ${task} on GPU ${spec#*=} exit $? $(date -u +%FT%TZ)"
         done) &
    done
    wait
    for task in ${TASKS-${TASK:-gpu_run}}; do
        "${task}_task"
    done
    echo "JOB DONE $(date -u +%FT%TZ)"
}

pack() {
    [ -n "${OUT:-}" ] || return 0
    # in 15 MB parts: a call refuses a larger file (cat results.tgz.part_* | tar xzf -)
    # (not the generated cases' previews: 19 of a 3-run job's 30 MB, which a fetched model needs in a call's 64 MiB;
    # the report's PNGs of four cases a run stay)
    (cd $JOB && tar czf - --exclude='*.nii.gz' --exclude='*.safetensors' --exclude='*.pt' --exclude='*.npy' \
        --exclude='*/data' --exclude='*/models' --exclude='*/checkpoints' --exclude='*/cache' --exclude='*/sr_cache' \
        --exclude='*/generated/*/preview.png' . 2>/dev/null | split -b 15M - "$OUT/results.tgz.part_")
    # the evaluation's shared nets with their weights (a few MB): the next session carries them back and
    # passes `--nets DIR` to quality_scale.py instead of training them again (minutes of a lease)
    # (PACK_NETS=0: not again, when the tree already has them: two fetched models need the room)
    local q=$JOB/quality_scale
    # (whichever are trained: a run without the fidelity phase trains the tissue net alone)
    local nets=""
    for net in feature_net tissue_net; do
        ls $q/$net/*.safetensors >/dev/null 2>&1 && nets="$nets $net"
    done
    if [ "${PACK_NETS:-1}" = 1 ] && [ -n "$nets" ]; then
        # shellcheck disable=SC2086  # a list of folder names
        (cd $q && tar czf "$OUT/nets.tgz" $nets 2>/dev/null)
    fi
    ls -la "$OUT"
}

wait_job() {
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$WAIT_S" ] && ! grep -q "JOB DONE" $JOB/log 2>/dev/null; do
        if ! pgrep -f "device_session.sh job" >/dev/null; then echo "job is not running"; break; fi
        sleep 10
    done
    tail -c 4000 $JOB/log
    for f in "$JOB"/*.log; do [ -f "$f" ] && { echo "-- $f"; tail -c 1500 "$f"; }; done
    pack
    # FETCH="RUN..." (or "all"): once the runs are trained and exported (quality_scale.json is written after
    # them, before the evaluation phases), every wait call brings those models back too, so a lease that
    # ends before the job does still has them (session 17 lost one that way); decide locally whether to
    # ship. One model is ~23 MB in bf16: two fit beside the results in a call's 64 MiB with PACK_NETS=0, so
    # "all" takes the first two exported (name more in later calls). (A quality_scale.json left by an
    # earlier job in the same lease would start the fetch early: harmless, those models are fetched.)
    if [ -n "${FETCH:-}" ] && [ -f $JOB/quality_scale/quality_scale.json ]; then
        local runs=$FETCH
        if [ "$FETCH" = all ]; then
            runs=$(cd $JOB/quality_scale/models 2>/dev/null && ls -d -- */ 2>/dev/null | tr -d / |
                   while read -r r; do [ -f "$r/model.safetensors" ] && echo "$r"; done | head -n 2)
        fi
        # shellcheck disable=SC2086  # a list of run names
        fetch_models $runs
    fi
}

fetch_models() {
    # `fetch RUN...`: models of $JOB/quality_scale/models/RUN (or any folder path) as bf16 weights
    # with their config and codec, in one tar split into 15 MB parts in $OUT (a 23 MB file is refused
    # whole; a call brings back 64 MiB at most: two 11.6M-parameter models a call). Here:
    #   cat files_at/models.tar.part_* | tar xf -    -> models/RUN/{model.safetensors,config.json,codec/}
    [ -n "${OUT:-}" ] || { echo "fetch: no \$OUT" >&2; return 2; }
    local stage=/tmp/fetch && rm -rf $stage && mkdir -p $stage/models
    for run in "$@"; do
        local src=$run; [ -d "$src" ] || src=$JOB/quality_scale/models/$run
        [ -f "$src/model.safetensors" ] || { echo "fetch: no model in $src" >&2; return 2; }
        local dst=$stage/models/$(basename "$run")
        mkdir -p "$dst" && cp -r "$src/config.json" "$src/codec" "$dst/" || return 1
        PYTHONPATH=/tmp/site python3 -c "import sys, torch; from safetensors.torch import load_file, save_file
d = load_file(sys.argv[1]); save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in d.items()}, sys.argv[2])" \
            "$src/model.safetensors" "$dst/model.safetensors" && chmod 644 "$dst/model.safetensors" || return 1  # save_file makes 0600
    done
    (cd $stage && tar cf - models | split -b 15M - "$OUT/models.tar.part_") && ls -la "$OUT"
}

case "${1:-}" in
    start)
        mkdir -p $JOB
        python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
        (cd /tmp && tar xzf "$OLDPWD"/.whl/deepspeed-*.tar.gz && cd deepspeed-*/ &&
            DS_BUILD_OPS=0 python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .) || exit 1
        rm -rf "$REPO" && mkdir -p "$REPO" && tar cf - --exclude=./.whl --exclude=./.git . | tar xf - -C "$REPO" || exit 1
        setsid nohup bash "$REPO/benchmarks/device_session.sh" job >$JOB/log 2>&1 < /dev/null &
        sleep 5
        wait_job
        ;;
    job) job ;;
    wait) wait_job ;;
    fetch) shift; fetch_models "$@" ;;
    *) echo "usage: $0 start|wait|fetch RUN..." >&2; exit 2 ;;
esac
