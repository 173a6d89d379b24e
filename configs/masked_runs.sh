#!/usr/bin/env bash
# docs/results.md "Goal-masked Meta-World" (issue 7): HCAM vs a window memory on masked10-reach
# (goal visible for the first 10 of 200 steps). Data: 200 scripted-expert episodes with the
# default noise (0.1; every fifth episode 0.5):
#   crl collect --tasks masked10-reach --episodes 200
#   bash configs/masked_runs.sh | xargs -P 2 -I{} bash -c {}
# Success is read from the 10 deterministic (greedy-bin) episodes per evaluation: sampling
# every action from 64 bins per dimension is too noisy for Meta-World's 5 cm success radius.
set -euo pipefail
COMMON="--agent dt --sequence masked10-reach --context 8 --dt-learning-rate 1e-3 --warmup 100 \
  --reward-scale 1000 --steps-per-task 3000 --eval-every 1000 --checkpoint-every 1000 \
  --eval-episodes 2 --eval-deterministic-episodes 10 --videos false --threads 1 --progress false \
  --runs-dir runs/masked"
for seed in 0 1; do
  echo "crl train $COMMON --memory hcam --memory-option chunk_size=8 --memory-option top_k=2 --memory-option position=sinusoidal --seed $seed --run-name masked10-reach-hcam-s$seed --overwrite"
  echo "crl train $COMMON --memory window --memory-option window=16 --seed $seed --run-name masked10-reach-window-s$seed --overwrite"
done
