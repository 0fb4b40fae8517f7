#!/usr/bin/env bash
# The paper's budget sweep on real models (Figs 4-5 and Table 1): every strategy at
# n = 4, 16, 64 on MATH500 (lm-eval), HumanEval+ (EvalPlus) and LiveCodeBench, guided by one
# math-trained PRM. NOT RUN in this repository (no GPU or network here).
#
#   POLICY=Qwen/Qwen2.5-Math-7B-Instruct CODE_POLICY=Qwen/Qwen2.5-Coder-7B-Instruct \
#   PRM=Qwen/Qwen2.5-Math-PRM-7B OUT=runs bash examples/paper/sweep.sh
#
# One GPU of 80 GB holds a 7B policy on vLLM and a 7B PRM in transformers. Budget: on an
# H100, MATH500 best-of-16 is on the order of an hour; n = 64 and MCTS several times that.
# Rerunning a killed command resumes from trace_path (lm-eval) or the samples file (EvalPlus).
set -euo pipefail
POLICY=${POLICY:-Qwen/Qwen2.5-Math-7B-Instruct}
CODE_POLICY=${CODE_POLICY:-Qwen/Qwen2.5-Coder-7B-Instruct}
PRM=${PRM:-Qwen/Qwen2.5-Math-PRM-7B}
OUT=${OUT:-runs}
BUDGETS=${BUDGETS:-"4 16 64"}
STRATEGIES=${STRATEGIES:-"bon beam mcts majority particle_filter dvts"}
TASKS="$(prm-plugin task-path)"

extra() {  # strategy-specific settings, as in the README's budgets table
  case "$1" in
    beam) echo ",beam_width=4" ;;
    mcts) echo ",expansion_width=4" ;;
    dvts) echo ",subtree_width=4" ;;
    majority) echo ",weighted=true" ;;
    *) echo "" ;;
  esac
}

for n in $BUDGETS; do
  for s in $STRATEGIES; do
    run="$OUT/$s-n$n"
    ma=$(extra "$s" | cut -c2-)  # the same settings without the leading comma
    # MATH500: accuracy with lm-eval; traces hold each problem's policy and PRM tokens.
    lm_eval --model prm_guided --tasks math500_prm --include_path "$TASKS" --apply_chat_template \
      --model_args "policy=vllm,pretrained=$POLICY,prm=$PRM,strategy=$s,n=$n$(extra "$s"),trace_path=$run/math500" \
      --output_path "$run/math500" --log_samples
    # HumanEval+: the math PRM guiding a code policy (the paper's transfer, Table 1).
    evalplus.evaluate --dataset humaneval --backend prm_guided --greedy \
      --model "policy=vllm,pretrained=$CODE_POLICY,prm=$PRM,strategy=$s,n=$n$(extra "$s")" \
      --root "$run/humaneval"
    # LiveCodeBench: problems released after the policy's cut-off.
    prm-plugin lcb --release release_v5 --start-date 2024-08-01 --end-date 2025-02-01 \
      --policy "$CODE_POLICY" --policy-backend vllm --prm "$PRM" --strategy "$s" --n "$n" \
      ${ma:+--model-args "$ma"} --output "$run/lcb"
  done
done
