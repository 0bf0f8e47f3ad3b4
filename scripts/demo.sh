#!/usr/bin/env bash
# `make demo`: the constitutional pipeline on the embedded default — built-in red-team prompts, the
# embedded constitution, and small models the demo makes itself — from scratch into runs/demo.
set -euo pipefail
config=${1:-Release}
cd "$(dirname "$0")/.."
rlaif() { dotnet "src/RlaifOnnx.Cli/bin/$config/net10.0/rlaif.dll" "$@"; }
step() { printf '\n== %s\n' "$*"; }
rm -rf runs/demo && mkdir -p runs/demo/models

step "00 base model: a small Llama-style model with the project's own tokenizer, pretrained briefly on the helpfulness prompts"
rlaif model create --arch llama --out runs/demo/models/random --vocab-size 1024 --hidden-size 64 --layers 2 \
  --heads 4 --kv-heads 2 --max-positions 1024 --seed 1
rlaif constitution show --yaml > runs/demo/constitution.yaml
rlaif train-lm --model runs/demo/models/random --data configs/demo/pretrain.jsonl --out runs/demo/00_pretrain \
  --steps 60 --optimizer-learning-rate 3e-3 --batch-size 8 --max-length 128 --optimizer-warmup 5 --seed 1
ln -s ../00_pretrain/model runs/demo/models/base

step "01 revise: answer red-team prompts, then critique and revise under sampled principles (4 rounds)"
rlaif revise --config configs/demo/01_revise.yaml

step "02 sft: fine-tune the base model on the final revisions mixed with its answers to helpfulness prompts (SL-CAI)"
rlaif sft --config configs/demo/02_sft.yaml

step "03 label: the SL-CAI model answers each prompt twice; the feedback model labels (A)/(B) under M principles"
rlaif label --config configs/demo/03_label.yaml

step "03 label (human-style pairs from examples/data): agreement, position consistency and calibration"
rlaif label --config configs/demo/03_label_human.yaml

step "04 PM pretraining: the base model + a scalar head learns which Stack Exchange answer scored higher (examples/data)"
rlaif pmp-data --config configs/demo/04_pmp_data.yaml
rlaif pm --config configs/demo/04_pmp.yaml

step "05 PM fine-tuning: AI harmlessness labels mixed with human-style helpfulness comparisons, soft-label loss"
rlaif mix --config configs/demo/05_mix.yaml
rlaif pm --config configs/demo/05_pm.yaml

step "06 ppo: the SL-CAI policy sampled, scored by the PM and updated by PPO (KL penalty to SL-CAI, value model from the PM)"
rlaif ppo --config configs/demo/06_ppo.yaml

step "generate: the SL-CAI model on held-out red-team prompts"
rlaif generate --model runs/demo/02_sft/train/model --prompts configs/demo/eval_prompts.jsonl --out runs/demo/eval_generations.jsonl \
  --max-new-tokens 24 --temperature 0
head -n 3 runs/demo/eval_generations.jsonl

step "07 evaluate: base, SL-CAI and RL-CAI on held-out red-team and helpfulness prompts; PM rewards, AI judgments, win rates, Elo"
rlaif evaluate --config configs/demo/07_evaluate.yaml

step "done"
echo "runs/demo holds: $(ls runs/demo | tr '\n' ' ')"
