"""Monte-Carlo step labels for the world's PRM, and how good they are.

The policy's own samples are labelled Math-Shepherd style by two annotators (the
policy at two temperatures) through the consensus filter of ``trainers.aslaf``.
Because the world knows every step's true label, the quality of those labels is a
measurement, not a guess: step accuracy and first-error accuracy of MC labels
against the truth, for one annotator on every solution (no filtering) and for the
solutions the consensus filter keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prm_plugin.search import PrefixProposals
from prm_plugin.trainers.world.sft import STEP_DELIMITER
from prm_plugin.world.generator import Problem
from prm_plugin.world.grading import final_answer, true_step_labels


class AnnotatorPolicy:
    """A policy pinned to one temperature and seed offset: one MC annotator."""

    def __init__(self, policy: Any, temperature: float, seed_offset: int, name: str) -> None:
        self.policy, self.temperature, self.seed_offset, self.name = policy, temperature, seed_offset, name

    def propose(self, prefixes: Sequence[str], **kwargs: Any) -> list[PrefixProposals]:
        kwargs["temperature"] = self.temperature
        kwargs["seed"] = (kwargs.get("seed") or 0) + self.seed_offset
        return list(self.policy.propose(prefixes, **kwargs))

    def count_tokens(self, text: str) -> int:
        return int(self.policy.count_tokens(text))


def answer_checker(solution: str, reference: Any) -> bool:
    """The world's answers are integers in ``\\boxed{}``: compare exactly (fast)."""
    ans = final_answer(solution)
    return ans is not None and ans.strip() == str(reference)


def sample_solution_rows(
    policy: Any, tokenizer: Any, problems: Sequence[Problem], *, samples: int, temperature: float,
    seed: int, max_tokens: int = 256,
) -> list[dict[str, Any]]:
    """Stepwise rows (``prompt``, ``completions``, ``answer``, ``true_labels``) from policy samples."""
    from prm_plugin.world.tokenizer import chat_prompt

    prompts = [chat_prompt(tokenizer, p.question) for p in problems]
    groups = policy.propose(prompts, n=samples, stop=(), max_tokens=max_tokens,
                            temperature=temperature, seed=seed)
    rows = []
    for problem, prompt, group in zip(problems, prompts, groups):
        for proposal in group:
            if proposal.stop_reason != "eos":
                continue  # ran out of tokens: no complete solution to label
            steps = proposal.text.split(STEP_DELIMITER)
            rows.append({
                "prompt": problem.question,
                "policy_prompt": prompt,
                "completions": steps,
                "answer": str(problem.answer),
                "true_labels": true_step_labels(problem, steps),
            })
    return rows


@dataclass
class LabelQuality:
    """MC labels against the truth (hard labels: soft > 0 means correct)."""

    solutions: int
    steps: int
    step_accuracy: float
    first_error_accuracy: float
    false_correct: int  # truly wrong steps labelled correct
    false_wrong: int  # truly correct steps labelled wrong

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def label_quality(pairs: Sequence[tuple[Sequence[float], Sequence[bool]]]) -> LabelQuality:
    """Compare (MC labels, true labels) pairs; a label > 0 counts as "correct"."""
    steps = right = first_right = false_correct = false_wrong = 0
    for mc, truth in pairs:
        hard = [x > 0 for x in mc]
        steps += len(hard)
        right += sum(h == t for h, t in zip(hard, truth))
        false_correct += sum(h and not t for h, t in zip(hard, truth))
        false_wrong += sum(t and not h for h, t in zip(hard, truth))
        first_right += _first_false(hard) == _first_false(truth)
    n = len(pairs)
    return LabelQuality(n, steps, right / steps if steps else float("nan"),
                        first_right / n if n else float("nan"), false_correct, false_wrong)


def _first_false(labels: Sequence[bool]) -> int:
    return next((i for i, x in enumerate(labels) if not x), -1)
