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
of two kinds: a *systematic* one, the dropped carry (``a + b`` written as
``a + b - 10`` when the units overflow) and dropped borrow (``a - b`` written as
``a - b + 10``), made with probability ``p_systematic`` on "hard" steps (units sum
``>= hard_threshold``, or units difference ``>= hard_threshold - 10``); and a rare
random one (a result off by a small amount). Later steps continue from the wrong
value, as a model that believes its own mistake would. A policy that learns this
distribution gets most hard steps wrong when greedy — and so does a majority vote —
while sampling finds the right path often: the regime in which a PRM that checks
each step pays off.
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

    hard_threshold: int = 14
    p_systematic: float = 0.6
    p_random: float = 0.03

    def __post_init__(self) -> None:
        if not 10 <= self.hard_threshold <= 18:
            raise ValueError(f"hard_threshold must be in [10, 18], got {self.hard_threshold}.")
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


def is_hard(a: int, op: str, b: int, threshold: int) -> bool:
    """A step whose units overflow enough to trigger the systematic error."""
    ua, ub = a % 10, b % 10
    return ua + ub >= threshold if op == "+" else ub - ua >= threshold - 10


def systematic_error(a: int, op: str, b: int) -> int:
    """The dropped carry / dropped borrow result."""
    return a + b - 10 if op == "+" else a - b + 10


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


def sample_solution_values(problem: Problem, rng: random.Random, errors: ErrorModel) -> list[int]:
    """Running values of one noisy solution under the error model."""
    vals = [problem.start]
    for op, b in problem.ops:
        a = vals[-1]
        result = apply(a, op, b)
        if is_hard(a, op, b, errors.hard_threshold) and rng.random() < errors.p_systematic:
            result = systematic_error(a, op, b)
        elif rng.random() < errors.p_random:
            result += rng.choice([-1, 1]) * rng.randint(1, 3)
        vals.append(result)
    return vals


def render_steps(problem: Problem, values: Sequence[int]) -> list[str]:
    """The solution's steps for a sequence of running values (true or noisy)."""
    steps: list[str] = []
    if problem.domain == "arith":
        for (op, b), a, r in zip(problem.ops, values, values[1:]):
            steps.append(f"{a} {op} {b} = {r}")
        steps.append(f"The answer is \\boxed{{{values[-1]}}}.")
        return steps
    steps.append(f"{VARS[0]} = {problem.start}")
    for i, ((op, b), a, r) in enumerate(zip(problem.ops, values, values[1:])):
        steps.append(f"{VARS[i + 1]} = {VARS[i]} {op} {b}  # {a} {op} {b} = {r}")
    steps.append(f"print({VARS[len(problem.ops)]})  # \\boxed{{{values[-1]}}}")
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
