"""Answer grading shared by the lm-eval tasks, the harness integrations and the trainer:
``math`` (math-verify and Minerva exact match), ``code`` (extraction, sandboxed checks),
``humaneval`` (EvalPlus rules) and ``livecodebench`` (its formats and rules)."""
