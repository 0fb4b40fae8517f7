"""Public value types of the sandbox: limits, results, verdicts, test cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "timeout", "memory", "output_limit", "runtime_error", "killed"]
TestStatus = Literal[
    "passed", "wrong_answer", "runtime_error", "invalid_output", "timeout", "memory",
    "output_limit", "killed", "not_run",
]
Level = Literal["full", "basic"]

MIB = 1 << 20


class SandboxError(RuntimeError):
    """The sandbox itself failed (could not start, lost its zygote): not the program's fault."""


def _positive(name: str, value: float, fix: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}; {fix}")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (or of one test, for ``timeout_s``).

    Attributes:
        timeout_s: CPU seconds, read by the parent from the whole process tree; in
            ``check_solution`` this is the per-test limit (and the load limit).
        memory_mb: RLIMIT_AS of every process (the interpreter itself takes ~30 MB of
            it) and the cap on the total resident memory of the process tree.
        wall_factor: the wall-clock backstop is ``timeout_s * wall_factor + wall_slack_s``;
            generous, because under load wall time drifts while CPU time does not.
        wall_slack_s: see ``wall_factor``.
        max_output_bytes: cap on stdout, on stderr and on the result channel, each,
            enforced while streaming.
        max_processes: cap on tasks (processes and threads) in the tree.
        tmp_mb: size of the private /tmp (and of /dev/shm).
        file_size_mb: RLIMIT_FSIZE.
        open_files: RLIMIT_NOFILE.
    """

    timeout_s: float = 10.0
    memory_mb: int = 1024
    wall_factor: float = 5.0
    wall_slack_s: float = 1.0
    max_output_bytes: int = 8 * MIB
    max_processes: int = 32
    tmp_mb: int = 64
    file_size_mb: int = 64
    open_files: int = 256

    def __post_init__(self) -> None:
        _positive("timeout_s", self.timeout_s, "pass the CPU-time limit in seconds, e.g. timeout_s=5")
        _positive("wall_factor", self.wall_factor, "use e.g. wall_factor=5 (wall backstop = 5x the CPU limit)")
        if not isinstance(self.wall_slack_s, (int, float)) or self.wall_slack_s < 0:
            raise ValueError(f"wall_slack_s must be >= 0, got {self.wall_slack_s!r}")
        for name, low in (("memory_mb", 64), ("max_output_bytes", 1024), ("max_processes", 1),
                          ("tmp_mb", 1), ("file_size_mb", 1), ("open_files", 16)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    @property
    def wall_s(self) -> float:
        """The wall-clock backstop for one ``timeout_s`` of CPU."""
        return self.timeout_s * self.wall_factor + self.wall_slack_s


@dataclass(frozen=True)
class ExecResult:
    """Outcome of :func:`run_python`.

    ``status``: ``ok`` (exit 0), ``timeout`` (CPU limit, wall backstop or SIGXCPU),
    ``memory`` (MemoryError, or the tree's resident memory over the limit),
    ``output_limit`` (stdout/stderr over the cap), ``runtime_error`` (non-zero exit or a
    crash signal such as SIGSEGV), ``killed`` (process limit, or killed by a signal the
    sandbox did not send). ``returncode`` follows ``subprocess``: negative for a signal.
    """

    status: Status
    stdout: str
    stderr: str
    returncode: int | None
    seconds: float
    cpu_seconds: float = 0.0
    reason: str = ""
    isolation: Level = "full"
    layers: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class FunctionalTest:
    """Call ``entry_point(*args)``; pass when the output equals ``expected``.

    ``atol`` is EvalPlus's absolute tolerance (0 means exact, except that float outputs
    always get at least 1e-6).
    """

    args: tuple[Any, ...]
    expected: Any
    atol: float = 0.0


@dataclass(frozen=True)
class StdioTest:
    """Feed ``input`` on stdin; pass when stdout matches ``output`` (LiveCodeBench rules)."""

    input: str
    output: str


@dataclass(frozen=True)
class TestResult:
    """One test of a :class:`Verdict`. ``output`` is the program's output as the parent
    decoded it (stdout text for stdio tests), ``None`` when there was none."""

    __test__ = False  # not a pytest class

    index: int
    status: TestStatus
    output: Any = None
    error: str = ""
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    attempts: int = 1

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`check_solution`, decided in the parent from the program's outputs."""

    passed: bool
    per_test: list[TestResult]
    error: str = ""
    isolation: Level = "full"
    layers: dict[str, Any] = field(default_factory=dict)

    @property
    def n_passed(self) -> int:
        return sum(t.passed for t in self.per_test)
