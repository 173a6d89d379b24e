#!/usr/bin/env bash
# The runs behind docs/results.md "Recall vs delay" (issue 7). Prints one command per run;
#   bash configs/recall_runs.sh | xargs -P 2 -I{} bash -c {}
# Data first (clean scripted-expert episodes, 200 per task):
#   crl collect --tasks recall-d50,recall-d200,recall-d1000 --episodes 200 --noise 0 --noisy-share 0
# Every memory has the same parameter count (216,640; the LSTM 217,856): HCAM with
# sinusoidal in-chunk positions, window and full attention share one readout shape, and the
# LSTM's hidden size is 36. Local attention spans 8 steps; the window memory adds 16 more,
# so the window model sees 24 steps, less than every delay.
set -euo pipefail
COMMON="--agent dt --context 8 --dt-learning-rate 1e-3 --warmup 100 --eval-episodes 20 \
  --eval-deterministic-episodes 0 --videos false --threads 1 --progress false --runs-dir runs/recall"
declare -A MEMORY=(
  [hcam]="--memory hcam --memory-option chunk_size=8 --memory-option top_k=2 --memory-option capacity=128 --memory-option position=sinusoidal"
  [window]="--memory window --memory-option window=16"
  [full]="--memory full --memory-option capacity=1024"
  [lstm]="--memory lstm --memory-option hidden_size=36"
)
declare -A UPDATES=([50]=1500 [200]=2500 [1000]=8000)
for seed in 0 1; do
  for delay in 50 200 1000; do
    updates=${UPDATES[$delay]}
    for memory in hcam window full lstm; do
      echo "crl train $COMMON ${MEMORY[$memory]} --sequence recall-d$delay --seed $seed \
--steps-per-task $updates --eval-every $((updates / 2)) --checkpoint-every $((updates / 2)) \
--run-name d$delay-$memory-s$seed --overwrite"
    done
  done
done
