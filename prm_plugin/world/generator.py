"""Multi-step arithmetic problems with exact step-level ground truth.

Two domains share one computation, a left-to-right chain of additions and
subtractions of small numbers, written in two surface forms:

* ``arith`` (math-like)::

      Compute 47 + 38 - 9 from left to right.
      steps: "47 + 38 = 85", "85 - 9 = 76", "The answer is \\boxed{76}."

* ``codelike`` (a straight-line program whose answer is its output)::

      a = 47 / b = a + 38 / c = b - 9 / print(c)
      steps: "a = 47", "b = a + 38  # 47 + 38 = 85", "c = b - 9  # 85 - 9 = 76",
             "print(c)  # \\boxed{76}"

Solutions are written step by step, separated by ``"\\n\\n"``; the final answer is in
``\\boxed{}`` so the math-verify grading path is exercised in both domains.

**The error model.** Training solutions for the policy are drawn with step errors
of two kinds: a *systematic* one, the transposed copy (a step starts from its running
value with the two digits swapped, ``26`` written as ``62``), made with probability
``p_systematic`` when the value is "hard" (two digits, the units digit larger than the
tens digit by at least ``hard_gap``); and, off by default, a random one (a result
off by a small amount, with probability ``p_random`` per step). Later steps continue from the wrong value, as a model that believes its own
mistake would. A policy that learns this distribution gets most hard steps wrong when
greedy (and so does a majority vote) while sampling finds the right path often: the
regime in which a PRM that checks each step pays off. A transposed copy is visible in
the solution itself (the step's first number differs from the previous result), so a
tiny PRM can learn to see it; the first world used the dropped carry instead, which a
0.6M-parameter PRM could not learn to check within the build's budget (step F1 0.74
even when trained on true labels). Random slips are off for the same reason: the PRM
cannot see them, and at temperature 1.0 a slipped path that happens to avoid hard
values outscored the right one in best-of-16 (30% against 58% greedy, world build 4).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

DOMAINS = ("arith", "codelike")
VARS = "abcdefghijklmnop"


@dataclass(frozen=True)
class Difficulty:
    """Knobs of problem difficulty: number of operations and operand size."""

    min_ops: int = 3
    max_ops: int = 5
    max_operand: int = 9
    max_value: int = 99

    def __post_init__(self) -> None:
        if not 1 <= self.min_ops <= self.max_ops <= len(VARS) - 1:
            raise ValueError(
                f"Need 1 <= min_ops <= max_ops <= {len(VARS) - 1}; got {self.min_ops}, {self.max_ops}."
            )
        if not 2 <= self.max_operand <= self.max_value or self.max_value < 20:
            raise ValueError(
                f"Need 2 <= max_operand <= max_value and max_value >= 20; got {self.max_operand}, {self.max_value}."
            )


@dataclass(frozen=True)
class ErrorModel:
    """How often the training solutions err (see the module docstring)."""

    hard_gap: int = 4
    p_systematic: float = 0.6
    p_random: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.hard_gap <= 9:
            raise ValueError(f"hard_gap must be in [1, 9], got {self.hard_gap}.")
        for name in ("p_systematic", "p_random"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")


@dataclass(frozen=True)
class Problem:
    """A chain ``start op1 b1 op2 b2 ...`` and its rendering in one domain."""

    uid: str
    domain: str
    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def values(self) -> list[int]:
        """The true running values: start, then after each operation."""
        vals = [self.start]
        for op, b in self.ops:
            vals.append(apply(vals[-1], op, b))
        return vals

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def question(self) -> str:
        if self.domain == "arith":
            chain = " ".join([str(self.start)] + [f"{op} {b}" for op, b in self.ops])
            return f"Compute {chain} from left to right."
        lines = [f"{VARS[0]} = {self.start}"]
        lines += [f"{VARS[i + 1]} = {VARS[i]} {op} {b}" for i, (op, b) in enumerate(self.ops)]
        lines.append(f"print({VARS[len(self.ops)]})")
        return "What does this program print?\n" + "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.uid,
            "domain": self.domain,
            "question": self.question,
            "steps": render_steps(self, self.values),
            "answer": str(self.answer),
            "start": self.start,
            "ops": [list(o) for o in self.ops],
        }

    @classmethod
    def from_json(cls, row: dict[str, object]) -> Problem:
        ops = tuple((str(op), int(b)) for op, b in row["ops"])  # type: ignore[attr-defined]
        return cls(str(row["id"]), str(row["domain"]), int(row["start"]), ops)  # type: ignore[call-overload]


def apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    raise ValueError(f"Unknown operation {op!r}; the world uses + and -.")


def is_hard(value: int, gap: int) -> bool:
    """A running value the systematic error transposes: two digits, units - tens >= gap."""
    return 10 <= value <= 99 and value % 10 - value // 10 >= gap


def transposed(value: int) -> int:
    """The value with its two digits swapped (the transposed copy)."""
    return 10 * (value % 10) + value // 10


def sample_problem(rng: random.Random, domain: str, difficulty: Difficulty, uid: str) -> Problem:
    """Draw a chain whose running values stay in ``[0, max_value]``."""
    if domain not in DOMAINS:
        raise ValueError(f"Unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}.")
    n_ops = rng.randint(difficulty.min_ops, difficulty.max_ops)
    value = rng.randint(10, min(99, difficulty.max_value))
    start, ops = value, []
    for _ in range(n_ops):
        b = rng.randint(2, difficulty.max_operand)
        op = rng.choice("+-")
        if op == "-" and value - b < 0 or op == "+" and value + b > difficulty.max_value:
            op = "+" if op == "-" else "-"
        if apply(value, op, b) < 0:  # neither fits: shrink the operand
            op, b = "+", min(b, difficulty.max_value - value)
        value = apply(value, op, b)
        ops.append((op, b))
    return Problem(uid, domain, start, tuple(ops))


def sample_solution(problem: Problem, rng: random.Random, errors: ErrorModel) -> list[tuple[int, int]]:
    """One noisy solution under the error model: (written first number, written result)
    of each operation, each step continuing from the previous written result."""
    pairs = []
    value = problem.start
    for op, b in problem.ops:
        left = value
        if is_hard(value, errors.hard_gap) and rng.random() < errors.p_systematic:
            left = transposed(value)
        result = apply(left, op, b)
        if rng.random() < errors.p_random:
            result += rng.choice([-1, 1]) * rng.randint(1, 3)
        pairs.append((left, result))
        value = result
    return pairs


def render_steps(problem: Problem, values: Sequence[int]) -> list[str]:
    """The steps of the solution with these running values (the true ones: ``problem.values``)."""
    return render_solution(problem, list(zip(values, values[1:])))


def render_solution(problem: Problem, pairs: Sequence[tuple[int, int]]) -> list[str]:
    """The steps of a solution given (first number, result) of each operation."""
    answer = pairs[-1][1] if pairs else problem.start
    steps: list[str] = []
    if problem.domain == "arith":
        for (op, b), (a, r) in zip(problem.ops, pairs):
            steps.append(f"{a} {op} {b} = {r}")
        steps.append(f"The answer is \\boxed{{{answer}}}.")
        return steps
    steps.append(f"{VARS[0]} = {problem.start}")
    for i, ((op, b), (a, r)) in enumerate(zip(problem.ops, pairs)):
        steps.append(f"{VARS[i + 1]} = {VARS[i]} {op} {b}  # {a} {op} {b} = {r}")
    steps.append(f"print({VARS[len(problem.ops)]})  # \\boxed{{{answer}}}")
    return steps


def make_set(domain: str, n: int, seed: int, difficulty: Difficulty | None = None, prefix: str = "") -> list[Problem]:
    """``n`` distinct problems, reproducible from the seed."""
    rng = random.Random(seed)
    diff = difficulty or Difficulty()
    seen: set[tuple[int, tuple[tuple[str, int], ...]]] = set()
    out: list[Problem] = []
    while len(out) < n:
        p = sample_problem(rng, domain, diff, f"{prefix}{domain}-{len(out):04d}")
        key = (p.start, p.ops)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
