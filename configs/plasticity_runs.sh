#!/usr/bin/env bash
# The runs behind docs/results.md "Plasticity" (issue 5). Two at a time on 2 cores:
#   bash configs/plasticity_runs.sh | xargs -P 2 -I{} bash -c {}
# Each line is one run; results land in runs/plasticity/<name>/results.json.
set -euo pipefail
CONFIG=configs/plasticity_dmc.yaml
for seed in 0 1; do
  for ratio in 0.5 2 adaptive; do
    echo "crl train --config $CONFIG --sequence cheetah-run --seed $seed --replay-ratio $ratio --run-name cheetah-rr$ratio-s$seed --overwrite"
  done
done
# Across a task switch: fine-tuning with and without ReDo (every 1k steps and at the switch).
for seed in 0; do
  echo "crl train --config $CONFIG --sequence walker-walk,walker-run --steps-per-task 15000 --seed $seed --run-name walker2-finetune-s$seed --overwrite"
  echo "crl train --config $CONFIG --sequence walker-walk,walker-run --steps-per-task 15000 --seed $seed --reset redo --reset-every 1000 --reset-at-task-start true --run-name walker2-redo-s$seed --overwrite"
done
