#!/bin/bash
# FedMRG measurement of docs/methods.md ("FedMRG", Measured): 11 experiments x seeds, one run at a
# time, threads=1. Data and the pretrained tiny model are fixed (benchmark.seed=0); the run seed
# varies LoRA init, batch order and dropout. Seeds are the outer loop, so an interrupted
# measurement leaves whole seeds. Then: python benchmarks/mrg_table.py <out>/root/logs
#   [EXPS="mrg_fedmrg ..."] benchmarks/mrg_measure.sh <out dir> [seeds, default "0 1 2"]
set -u
OUT=${1:?usage: benchmarks/mrg_measure.sh <out dir> [seeds]}
SEEDS=${2:-0 1 2}
cd "$(dirname "$0")/.."
mkdir -p "$OUT/logs"
ARGS="benchmark.seed=0 benchmark.partition.seed=0 benchmark.sites=[a,c,d] benchmark.train_sizes.report=60 benchmark.test_size=24 benchmark.public_size=1000 model.pretrain.steps=300 federation.rounds=3 federation.local_steps=15 federation.eval_every=3 federation.max_new_tokens.report=48 threads=1 logger=none"
EXPS=${EXPS:-"mrg_fedmrg mrg_fedavg mrg_standalone mrg_fedmrg_no_lowrank mrg_fedmrg_no_contrast mrg_fedmrg_no_prompt mrg_fedmrg_no_dual mrg_fedmrg_no_mutual mrg_fedsa mrg_feddpa mrg_centralized"}
for seed in $SEEDS; do
  for e in $EXPS; do
    start=$(date +%s)
    python -m fedmllm.train experiment="$e" seed="$seed" $ARGS paths.root_dir="$OUT/root" \
      task_name="${e}_s$seed" > "$OUT/logs/${e}_s$seed.log" 2>&1
    echo "$e seed=$seed rc=$? wall=$(( $(date +%s) - start ))s" >> "$OUT/done.txt"
  done
done
