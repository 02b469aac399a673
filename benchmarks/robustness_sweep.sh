#!/usr/bin/env bash
# The robustness measurement of docs/robustness.md: FedAvg and each robust rule, clean and with
# 1 of 5 clients attacking, on fedvqa_synth with a short schedule; 3 training seeds (data,
# partition and pretrained model fixed by benchmark.seed=0), one Hydra multirun per seed and
# phase, threads=1. Usage: bash benchmarks/robustness_sweep.sh [LOG_DIR] [PHASE...]
# Phases: sign (clean + sign flip x10), label (label flip), products (distance=products).
# Tabulate with: python benchmarks/robustness_table.py LOG_DIR
set -u
LOG=${1:-logs/robustness}
shift || true
PHASES=${*:-sign label products}
SHORT="experiment=fedvqa_fedavg benchmark.seed=0 benchmark.partition.seed=0
  federation.rounds=5 federation.local_steps=10 federation.eval_every=5
  benchmark.test_size=50 model.pretrain.steps=1000 analysis.path_similarity=false threads=1
  paths.log_dir=$LOG"
RULES=fedavg,median,trimmed_mean,krum,multikrum,norm_bounded
mkdir -p "$LOG"
for phase in $PHASES; do
  for seed in 0 1 2; do
    t0=$(date +%s)
    case $phase in
      sign) args="aggregator=$RULES attack=none,sign_flip" ;;
      label) args="aggregator=$RULES attack=label_flip" ;;
      products)  # one run per rule: a multirun cannot override a key of a swept group
        for rule in krum multikrum norm_bounded; do
          python train.py -m $SHORT task_name=rob_$phase seed=$seed aggregator=$rule \
            aggregator.distance=products attack=none,sign_flip >> "$LOG/${phase}_s$seed.log" 2>&1
        done
        echo "$phase seed=$seed wall=$(( $(date +%s) - t0 ))s"
        continue ;;
    esac
    python train.py -m $SHORT task_name=rob_$phase seed=$seed $args \
      > "$LOG/${phase}_s$seed.log" 2>&1
    echo "$phase seed=$seed rc=$? wall=$(( $(date +%s) - t0 ))s"
  done
done
