#!/usr/bin/env bash
# The robustness measurement of docs/robustness.md: FedAvg and each robust rule, clean and with
# 1 of 5 clients attacking, on fedvqa_synth with a short schedule; 3 training seeds, one after
# another, threads=1. Usage: bash benchmarks/robustness_sweep.sh [LOG_DIR] [PHASE...]
# Phases: sign (clean + sign flip x10), label (label flip), products (distance=products).
set -u
LOG=${1:-logs/robustness}
shift || true
PHASES=${*:-sign label products}
SHORT="experiment=fedvqa_fedavg benchmark.seed=0 benchmark.partition.seed=0
  federation.rounds=5 federation.local_steps=10 federation.eval_every=5
  benchmark.test_size=50 model.pretrain.steps=1000 analysis.path_similarity=false threads=1
  paths.log_dir=$LOG"
RULES="fedavg median trimmed_mean krum multikrum norm_bounded"
run() {  # task name, then overrides
  local task=$1; shift
  local t0=$(date +%s)
  python train.py $SHORT task_name=$task "$@" > /dev/null 2>"$LOG/$task.err" \
    && echo "$task $* wall=$(( $(date +%s) - t0 ))s" || echo "$task $* FAILED"
}
mkdir -p "$LOG"
for phase in $PHASES; do
  for seed in 0 1 2; do
    for rule in $RULES; do
      case $phase in
        sign)
          run "clean_${rule}_s$seed" aggregator=$rule seed=$seed
          run "sign_${rule}_s$seed" aggregator=$rule attack=sign_flip seed=$seed ;;
        label)
          run "label_${rule}_s$seed" aggregator=$rule attack=label_flip seed=$seed ;;
        products)
          case $rule in krum|multikrum|norm_bounded)
            run "sign_${rule}_products_s$seed" aggregator=$rule aggregator.distance=products \
              attack=sign_flip seed=$seed
            run "clean_${rule}_products_s$seed" aggregator=$rule aggregator.distance=products \
              seed=$seed ;;
          esac ;;
      esac
    done
  done
done
