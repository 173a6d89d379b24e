#!/usr/bin/env bash
# docs/results.md "L2M on CW10" (issue 6): data, pretraining of `small` on MT40, then continual
# fine-tuning on all of CW10 with every mode. Budgets are a small fraction of the paper's
# (see docs/results.md).
#   bash configs/l2m_runs.sh collect                 # MT40 x 40 and CW10 x 50 expert episodes
#   bash configs/l2m_runs.sh pretrain                # crl pretrain (2 threads, ~40 min)
#   bash configs/l2m_runs.sh finetune 0 | xargs -P 2 -I{} bash -c {}     # seed 0, 2 at a time
#   bash configs/l2m_runs.sh finetune 1 l2m-lora full | xargs -P 2 -I{} bash -c {}
#   bash configs/l2m_runs.sh report                  # crl report over every finished run
# Modes (finetune's optional filter): l2m-lora l2m-ia3 full ewc l2p oracle-lora.
set -euo pipefail
UPDATES=${UPDATES:-1000}  # fine-tuning updates per task
ALL_MODES="l2m-lora l2m-ia3 full ewc l2p"
case "${1:-}" in
  collect)
    crl collect --tasks MT40 --episodes 40 --overwrite --no-progress
    crl collect --tasks CW10 --episodes 50 --overwrite --no-progress
    ;;
  pretrain)
    crl pretrain --data MT40 --model small --batch-size 32 --updates 20000 \
      --checkpoint-every 2000 --eval-episodes 3 --threads 2 --out runs/l2m10/pretrain-small
    ;;
  finetune)
    seed=${2:?usage: $0 finetune SEED [MODE ...]}
    shift 2
    modes=${*:-$ALL_MODES}
    COMMON="--agent l2m --sequence CW10 --pretrained runs/l2m10/pretrain-small/model.pt \
      --steps-per-task $UPDATES --eval-every $UPDATES --checkpoint-every $UPDATES \
      --eval-episodes 3 --eval-deterministic-episodes 1 --pretrain-eval-tasks 5 \
      --videos false --threads 1 --progress false --runs-dir runs/l2m10 --seed $seed"
    for name in $modes; do
      case "$name" in
        l2m-lora|l2m-ia3|oracle-lora) mode="${name%-*} --modulator ${name##*-}" ;;
        full|ewc|l2p) mode=$name ;;
        *) echo "unknown mode $name; choose from $ALL_MODES oracle-lora" >&2; exit 2 ;;
      esac
      echo "crl train $COMMON --l2m-mode $mode --run-name cw10-$name-s$seed --overwrite"
    done
    ;;
  report)
    finished=$(grep -l '"finished": true' runs/l2m10/cw10-*/results.json | xargs -n1 dirname)
    # shellcheck disable=SC2086
    crl report $finished --out report/l2m-cw10
    ;;
  *) echo "usage: $0 collect|pretrain|finetune SEED [MODE ...]|report" >&2; exit 2 ;;
esac
