"""Running untrusted Python: isolation, limits, and verdicts decided outside the sandbox.

``run_python`` runs a script; ``check_solution`` grades a program on functional
(EvalPlus-style) or stdio (LiveCodeBench-style) tests, comparing outputs in the parent;
``run_many``/``check_many`` do either for many programs through a bounded pool;
``behaviour_signature`` is the code answer key for majority voting. The isolation level
in force ("full" or "basic") and its layers are recorded in every result.
"""

from .api import check_solution, default_sandbox, run_python
from .box import Sandbox, lost_layers
from .compare import functional_equal, stdio_equal
from .model import (
    ExecResult,
    FunctionalTest,
    Limits,
    SandboxError,
    StdioTest,
    TestResult,
    Verdict,
)
from .pool import check_many, run_many
from .signature import behaviour_signature, behaviour_signatures, canonical, doctest_inputs

__all__ = [
    "ExecResult",
    "FunctionalTest",
    "Limits",
    "Sandbox",
    "SandboxError",
    "StdioTest",
    "TestResult",
    "Verdict",
    "behaviour_signature",
    "behaviour_signatures",
    "canonical",
    "check_many",
    "check_solution",
    "default_sandbox",
    "doctest_inputs",
    "functional_equal",
    "lost_layers",
    "run_many",
    "run_python",
    "stdio_equal",
]
