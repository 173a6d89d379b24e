#!/usr/bin/env bash
# docs/results.md "L2M, reduced" (issue 6): data, pretraining on MT40, then fine-tuning on CW10's
# first three tasks (hammer, push-wall, faucet-close)
# with every mode. Budgets are a small fraction of the paper's (see docs/results.md).
#   bash configs/l2m_runs.sh pretrain     # data + crl pretrain (sequential)
#   bash configs/l2m_runs.sh finetune | xargs -P 2 -I{} bash -c {}
set -euo pipefail
case "${1:-}" in
  pretrain)
    crl collect --tasks MT40 --episodes 10
    crl collect --tasks CW10 --episodes 20
    crl pretrain --data MT40 --model small --updates 3000 --eval-episodes 2 --threads 1 \
      --out runs/l2m/pretrain-small
    ;;
  finetune)
    COMMON="--agent l2m --sequence hammer,push-wall,faucet-close --pretrained runs/l2m/pretrain-small/model.pt \
      --steps-per-task 300 --eval-every 300 --checkpoint-every 300 --eval-episodes 3 \
      --eval-deterministic-episodes 1 --pretrain-eval-tasks 5 --videos false --threads 1 \
      --progress false --runs-dir runs/l2m"
    for mode in "l2m --modulator lora" "l2m --modulator ia3" "full" "l2p" "ewc"; do
      name=$(echo "$mode" | sed 's/ --modulator /-/')
      echo "crl train $COMMON --l2m-mode $mode --run-name cw3-$name-s0 --overwrite"
    done
    ;;
  *) echo "usage: $0 pretrain|finetune" >&2; exit 2 ;;
esac
