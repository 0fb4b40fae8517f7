"""``prm-plugin lm-eval`` and ``prm-plugin task-path``.

``prm-plugin lm-eval ARGS`` is lm-eval's own CLI with ``prm_guided`` registered in
the process, for environments where the ``.pth`` hook is off or missing
(``PRM_PLUGIN_NO_LM_EVAL_HOOK=1``, a ``python -S`` interpreter, an install that
skipped the file). When no ``--include_path`` is given, this package's task configs
are added, so ``--tasks math500_prm`` works out of the box.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def task_path_main(argv: Sequence[str]) -> int:
    """Print the folder of the shipped lm-eval task configs (for ``--include_path``)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="prm-plugin task-path",
        description="Print the folder of prm-plugin's lm-eval task configs, for lm_eval --include_path.",
    )
    parser.parse_args(list(argv))
    import prm_plugin.task_configs as task_configs

    print(task_configs.path())
    return 0


def lm_eval_main(argv: Sequence[str]) -> int:
    """Run lm-eval's CLI (``lm_eval ARGS``) with ``prm_guided`` registered."""
    args = list(argv)
    if not any(a == "--include_path" or a.startswith("--include_path=") for a in args) and _runs(args):
        import prm_plugin.task_configs as task_configs

        args += ["--include_path", task_configs.path()]
    from lm_eval.__main__ import cli_evaluate

    import prm_plugin.integrations.lm_eval  # noqa: F401  # registers prm_guided after lm-eval's models
    from prm_plugin.integrations.faults import FAILURES

    start = len(FAILURES.failures)
    saved = sys.argv
    sys.argv = ["lm_eval", *args]
    try:
        cli_evaluate()
    except SystemExit as exc:  # argparse --help / errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return FAILURES.exit_status(start)


def _runs(args: list[str]) -> bool:
    # `lm_eval ls ...` / `lm_eval validate ...` / `--help` take no --include_path from us.
    return bool(args) and args[0] not in ("ls", "validate", "-h", "--help")
