"""lm-eval task configs shipped with prm-plugin, for ``--include_path``.

``lm_eval --model prm_guided ... --include_path "$(prm-plugin task-path)"`` makes
``math500_prm``, ``humaneval_plus_prm``, ``livecodebench_prm``, ``arith_prm`` and
``codelike_prm`` available. Each task's docs carry ``prm_question`` (the text the
PRM sees) and ``prm_domain`` (``math`` or ``code``), which ``prm_guided`` reads.

Local data: set ``PRM_PLUGIN_DATA_<TASK>`` (e.g. ``PRM_PLUGIN_DATA_MATH500_PRM``) to a
JSONL file in the upstream dataset's format, or pass ``--metadata
'{"<task>_data_files": "path.jsonl"}'``; the same task code then runs offline.
"""

from __future__ import annotations

from pathlib import Path

TASKS = ("math500_prm", "humaneval_plus_prm", "livecodebench_prm", "arith_prm", "codelike_prm")


def path() -> str:
    """The folder to pass to lm-eval's ``--include_path``."""
    return str(Path(__file__).resolve().parent)


__all__ = ["TASKS", "path"]
