#!/usr/bin/env bash
# Avg score vs ε for FedAvg and Fed-MoLE with DP-SGD, plus the membership audit of each run
# (docs/privacy.md). Short config: fedmed_synth, 3 rounds x 10 local steps, batch 8; data and
# pretrained model of benchmark seed 0 for every run seed (seeds vary adapters, batches, noise).
# Usage: bash benchmarks/privacy_sweep.sh <out dir> <method:eps:seed> ...
#   e.g. bash benchmarks/privacy_sweep.sh logs/privacy_sweep fedavg:inf:0 fedavg:3:0 mole:1:0
# A job whose audit.json exists is skipped; one with results.json only is audited.
set -u
OUT=$1
shift
COMMON="threads=1 logger=none federation.rounds=3 federation.local_steps=10 federation.eval_every=0 benchmark.seed=0 benchmark.partition.seed=0 compare_with=null"
for job in "$@"; do
  IFS=: read -r method eps seed <<< "$job"
  dir=$OUT/${method}_eps${eps}_seed${seed}
  [ -f "$dir/audit.json" ] && continue
  if [ "$eps" = inf ]; then privacy="privacy=none"; else privacy="privacy=dp_sgd privacy.target_epsilon=$eps"; fi
  exp=fedmed_fedavg; [ "$method" = mole ] && exp=fedmed_mole
  t0=$(date +%s)
  if [ ! -f "$dir/results.json" ]; then
    python train.py experiment=$exp seed=$seed $COMMON $privacy hydra.run.dir=$dir > "$dir.train.log" 2>&1 || { echo "FAILED $dir"; continue; }
  fi
  t1=$(date +%s)
  python -m fedmllm.privacy.audit "$dir" --max-samples 100 > "$dir.audit.log" 2>&1 || echo "AUDIT FAILED $dir"
  t2=$(date +%s)
  echo "$dir train $((t1 - t0)) s audit $((t2 - t1)) s"
done
