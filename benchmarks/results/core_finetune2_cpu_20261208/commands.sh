# What ran (2 CPU cores, /tmp/venv with torch 2.13.0 CPU; code at 09844bf..d4cdbfc, no change to what these read),
# from the repository root, one after another but where said. DATA: session 62's 256-case anatomy set
# (medidiff manifest build brats, seed 0); MANIFEST: its training folds, session 63's core_finetune manifest (203 cases).
R=benchmarks/results/core_finetune2_cpu_20261208; G=benchmarks/results/core_finetune_cpu_20261207/gen_ratio.py
ft() { python $R/finetune.py --steps 150 --data DATA --manifest MANIFEST --out OUT "$@"; }
ft --arm tmean05                                        # 538 s
python $G OUT/tmean05 12 $R/gen_tmean05.json             # ~34 s a case
ft --arm control --seed-offset 10 --name control_s10    # 525 s: another draw of the cases and the noise
python $G OUT/control_s10 12 $R/gen_control_s10.json
ft --arm control --lr 2e-4 --name control_lr2e4         # 511 s: the recipe's learning rate (a first try failed:
python $G OUT/control_lr2e4 12 $R/gen_control_lr2e4.json #   benchmarks/results was moved away for a device call)
ft --arm control --seed-offset 20 --name control_s20    # 584 s: a third draw (wt_check.py below started beside
#                                                         its last steps: a wait on the wrong log)
python $G OUT/control_s20 12 $R/gen_control_s20.json     # beside the next line (both slower)
python $R/wt_check.py OUT/control_lr2e4 $R/wt_control_lr2e4.json 0 1 2 3
python $R/compare.py SESSION62/core/soft_masks.npz control=benchmarks/results/core_finetune_cpu_20261207/gen_control.json \
  high=benchmarks/results/core_finetune_cpu_20261207/gen_high.json tmean05=$R/gen_tmean05.json \
  control_s10=$R/gen_control_s10.json control_s20=$R/gen_control_s20.json control_lr2e4=$R/gen_control_lr2e4.json > $R/compare.md
