"""Monte-Carlo step labelling with consensus filtering across annotator policies.

For every step prefix of a solution (``question``, ``steps[:i+1]``), each of M annotator
policies (anything with the ``prm_plugin.policy.base.Policy`` contract) samples K
rollouts to the end; an annotator's soft label for step *i* is the fraction of its
rollouts whose final answer the checker accepts (Math-Shepherd's Monte-Carlo
estimation). Each annotator's *first-error location* is the first step whose soft label
is not above ``correct_threshold`` (0 by default: a step is correct when any rollout
recovers, the "hard estimation"), or -1 when there is none. A solution is kept only
when all annotators agree on that location; its labels are then the pooled fraction
over all M*K rollouts (``labels="soft"``) or the agreed 0/1 pattern (``labels="hard"``).

Policy calls are batched: one ``propose`` call per annotator carries every prefix of
up to ``batch_size`` solutions.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class Annotator(Protocol):
    """What an annotator must do: the ``propose`` of ``prm_plugin.policy.base.Policy``
    (any policy fits; an optional ``name`` attribute labels it in reports)."""

    def propose(self, prefixes: Sequence[str], *, n: int, stop: Sequence[str], final_stop: Sequence[str],
                max_tokens: int, temperature: float, top_p: float, seed: int | None) -> Sequence[Sequence[Any]]:
        ...


#: ``checker(solution_text, reference) -> bool``; ``reference`` is the row's answer field
#: (a string for math, the tests for code). ``prm_plugin.grading.math.math_checker`` and
#: ``prm_plugin.grading.code.code_checker`` are ready-made ones.
Checker = Callable[[str, Any], bool]


@dataclass
class ConsensusConfig:
    """Settings of ``label_and_filter``.

    Attributes:
        k: rollouts per step prefix per annotator.
        max_tokens / temperature / top_p / seed: sampling of the rollouts.
        final_stop: strings that end a rollout (e.g. a chat end token).
        step_separator: joins the steps of a prefix (and ends it).
        correct_threshold: an annotator deems a step correct when its soft label is above this.
        label_last_step_by_answer: the last step's label is the correctness of the solution's
            own final answer (no rollouts), as in Math-Shepherd.
        batch_size: solutions whose prefixes go into one ``propose`` call.
        labels: ``"soft"`` (pooled fractions) or ``"hard"`` (the agreed 0/1 pattern).
        answer_key: the row field holding the reference answer.
        stop_at_first_error: label step by step and stop rolling out a solution once an
            annotator finds its first error (later steps get 0.0 from that annotator). Exact
            for hard labels and the first-error location, and far cheaper on erroneous
            solutions; soft labels after the first error become 0.
    """

    k: int = 8
    max_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = 0
    final_stop: tuple[str, ...] = ()
    step_separator: str = "\n\n"
    correct_threshold: float = 0.0
    label_last_step_by_answer: bool = True
    batch_size: int = 32
    labels: str = "soft"
    answer_key: str = "answer"
    stop_at_first_error: bool = False

    def __post_init__(self) -> None:
        if self.k < 1 or self.batch_size < 1:
            raise ValueError(f"k and batch_size must be >= 1, got k={self.k}, batch_size={self.batch_size}.")
        if self.labels not in ("soft", "hard"):
            raise ValueError(f"labels must be 'soft' or 'hard', got {self.labels!r}.")
        if not 0.0 <= self.correct_threshold < 1.0:
            raise ValueError(f"correct_threshold must be in [0, 1), got {self.correct_threshold}.")


@dataclass
class ConsensusReport:
    """What the filter did: counts and agreement rates across annotators."""

    annotators: list[str]
    total: int = 0
    kept: int = 0
    dropped: int = 0
    all_agree_rate: float = 0.0
    pairwise_agreement: dict[str, float] = field(default_factory=dict)
    step_agreement_rate: float = 0.0
    dropped_indices: list[int] = field(default_factory=list)
    #: Every row's soft labels, ``[row][annotator][step]``, kept or dropped (not in to_json).
    soft_labels: list[list[list[float]]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "soft_labels"}


def first_error(soft: Sequence[float], threshold: float) -> int:
    """Index of the first step with soft label <= threshold, or -1.

    >>> first_error([1.0, 0.5, 0.0, 0.25], 0.0), first_error([0.5, 0.25], 0.0)
    (2, -1)
    """
    return next((i for i, x in enumerate(soft) if x <= threshold), -1)


def label_and_filter(
    rows: Sequence[Mapping[str, Any]],
    annotators: Sequence[Annotator],
    *,
    checker: Checker,
    config: ConsensusConfig | None = None,
    policy_prompt: Callable[[Mapping[str, Any]], str] | None = None,
) -> tuple[list[dict[str, Any]], ConsensusReport]:
    """Monte-Carlo label ``rows`` with every annotator and keep the agreed ones.

    Args:
        rows: dicts with ``prompt`` (question), ``completions`` (steps) and the reference
            answer under ``config.answer_key``.
        annotators: one or more policies (``propose``); named by their ``name`` attribute.
        checker: decides whether a full solution text reaches the reference answer
            (e.g. ``prm_plugin.grading.math.math_checker``).
        config: rollout and filtering settings.
        policy_prompt: the text each prefix starts with (default: the row's
            ``policy_prompt`` field, else its question followed by the step separator).

    Returns:
        The kept rows (``prompt``, ``completions``, ``labels``, ``first_error``,
        ``annotator_labels``: each annotator's soft labels) and a ``ConsensusReport``.
    """
    cfg = config or ConsensusConfig()
    if not annotators:
        raise ValueError("label_and_filter needs at least one annotator policy.")
    names = [str(getattr(a, "name", f"annotator{i}")) for i, a in enumerate(annotators)]
    prompt_of = policy_prompt or (lambda r: r.get("policy_prompt") or r["prompt"] + cfg.step_separator)
    for i, row in enumerate(rows):
        if not row.get("completions") or cfg.answer_key not in row:
            raise ValueError(f"Row {i}: needs non-empty 'completions' and a reference answer in "
                             f"{cfg.answer_key!r} (set ConsensusConfig.answer_key for another field).")
    soft: list[list[list[float]]] = []  # [row][annotator][step]
    for start in range(0, len(rows), cfg.batch_size):
        batch = rows[start:start + cfg.batch_size]
        soft.extend(_label_batch(batch, annotators, names, cfg, checker, prompt_of))
    return _filter(rows, soft, names, cfg)


def _label_batch(
    batch: Sequence[Mapping[str, Any]],
    annotators: Sequence[Annotator],
    names: list[str],
    cfg: ConsensusConfig,
    checker: Checker,
    prompt_of: Callable[[Mapping[str, Any]], str],
) -> list[list[list[float]]]:
    out = [[[0.0] * len(row["completions"]) for _ in annotators] for row in batch]
    n_rolled = [len(row["completions"]) - (1 if cfg.label_last_step_by_answer else 0) for row in batch]
    for a, (policy, name) in enumerate(zip(annotators, names, strict=True)):
        jobs = [(r, i) for r, n in enumerate(n_rolled) for i in range(n)]
        if not cfg.stop_at_first_error:
            _rollouts(batch, jobs, policy, name, cfg, checker, prompt_of, out, a)
            continue
        alive = [True] * len(batch)  # no first error found yet by this annotator
        for step in range(max(n_rolled, default=0)):
            todo = [(r, i) for r, i in jobs if i == step and alive[r]]
            _rollouts(batch, todo, policy, name, cfg, checker, prompt_of, out, a)
            for r, i in todo:
                alive[r] = alive[r] and out[r][a][i] > cfg.correct_threshold
    if cfg.label_last_step_by_answer:
        sep = cfg.step_separator
        for r, row in enumerate(batch):
            own = float(checker(sep.join(row["completions"]), row[cfg.answer_key]))
            for a in range(len(annotators)):
                out[r][a][-1] = own
    return out


def _rollouts(
    batch: Sequence[Mapping[str, Any]], jobs: Sequence[tuple[int, int]], policy: Annotator, name: str,
    cfg: ConsensusConfig, checker: Checker, prompt_of: Callable[[Mapping[str, Any]], str],
    out: list[list[list[float]]], a: int,
) -> None:
    """K rollouts from each (row, step) prefix in one ``propose`` call; writes soft labels."""
    if not jobs:
        return
    sep = cfg.step_separator
    prefixes = [prompt_of(batch[r]) + sep.join(batch[r]["completions"][: i + 1]) + sep for r, i in jobs]
    groups = policy.propose(prefixes, n=cfg.k, stop=(), final_stop=cfg.final_stop,
                            max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                            top_p=cfg.top_p, seed=cfg.seed)
    if len(groups) != len(prefixes) or any(len(g) != cfg.k for g in groups):
        raise ValueError(f"Annotator {name!r} returned {len(groups)} groups for {len(prefixes)} "
                         f"prefixes (expected {cfg.k} proposals each); it breaks the policy contract.")
    for (r, i), group in zip(jobs, groups, strict=True):
        done = sep.join(batch[r]["completions"][: i + 1]) + sep
        out[r][a][i] = sum(checker(done + p.text, batch[r][cfg.answer_key]) for p in group) / cfg.k


def _filter(
    rows: Sequence[Mapping[str, Any]],
    soft: list[list[list[float]]],
    names: list[str],
    cfg: ConsensusConfig,
) -> tuple[list[dict[str, Any]], ConsensusReport]:
    report = ConsensusReport(annotators=names, total=len(rows), soft_labels=soft)
    pair_hits = dict.fromkeys(itertools.combinations(range(len(names)), 2), 0)
    steps_total = steps_agree = 0
    kept_rows = []
    for idx, (row, per_annotator) in enumerate(zip(rows, soft, strict=True)):
        errors = [first_error(s, cfg.correct_threshold) for s in per_annotator]
        for a, b in pair_hits:
            pair_hits[(a, b)] += errors[a] == errors[b]
        for step_labels in zip(*per_annotator, strict=True):
            steps_total += 1
            steps_agree += len({x > cfg.correct_threshold for x in step_labels}) == 1
        if len(set(errors)) != 1:
            report.dropped_indices.append(idx)
            continue
        pooled = [sum(col) / len(col) for col in zip(*per_annotator, strict=True)]
        agreed = errors[0]
        hard = [0.0 if agreed != -1 and i >= agreed else 1.0 for i in range(len(pooled))]
        kept_rows.append({
            "prompt": row["prompt"],
            "completions": list(row["completions"]),
            "labels": pooled if cfg.labels == "soft" else hard,
            "first_error": agreed,
            "annotator_labels": per_annotator,
        })
    report.kept, report.dropped = len(kept_rows), len(rows) - len(kept_rows)
    report.all_agree_rate = report.kept / len(rows) if rows else float("nan")
    report.pairwise_agreement = {
        f"{names[a]}~{names[b]}": hits / len(rows) if rows else float("nan") for (a, b), hits in pair_hits.items()
    }
    report.step_agreement_rate = steps_agree / steps_total if steps_total else float("nan")
    logger.info("Consensus filter: kept %d of %d (agreement %.3f)", report.kept, report.total,
                report.all_agree_rate)
    return kept_rows, report
