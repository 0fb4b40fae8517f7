"""The ``prm-plugin`` command: a table of subcommands, each a ``main(argv)`` imported
only when used, so ``prm-plugin strategies`` never pays for torch or TRL."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> ("module:function", one-line help). Each function takes argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("prm_plugin.demo:main", "the offline demo: lm-eval + prm_guided on the synthetic world, five strategies"),
    "strategies": ("prm_plugin.cli:strategies_main", "list registered search strategies and their source"),
    "train": ("prm_plugin.trainers.cli:main", "train a value-head PRM from a YAML recipe and/or flags (TRL style)"),
    "export-prm": ("prm_plugin.trainers.export:main", "export a value-head PRM as a two-class token-classification head"),
    "lm-eval": ("prm_plugin.integrations.lm_eval_cli:lm_eval_main",
                "run lm-eval's CLI with --model prm_guided registered (fallback for the .pth hook)"),
    "task-path": ("prm_plugin.integrations.lm_eval_cli:task_path_main",
                  "print the folder of the shipped lm-eval tasks, for --include_path"),
    "world": ("prm_plugin.trainers.world.build:main", "the synthetic world: `world build` rebuilds it, `world paths` lists it"),
    "evalplus": ("prm_plugin.integrations.evalplus_cli:main",
                 "run EvalPlus codegen + evaluation with the prm_guided backend (fallback for the .pth hook)"),
    "lcb": ("prm_plugin.integrations.lcb_cli:main",
            "LiveCodeBench code generation with search: outputs in its format, pass@1 from the sandbox"),
    "serve": ("prm_plugin.serve.cli:main", "serve the search over the OpenAI API (/v1/completions, /v1/chat/completions)"),
    "calibrate": ("prm_plugin.calibrate:main",
                  "measure accuracy and cost per strategy and budget on a dev set: the table `auto` chooses from"),
    "reproduce": ("prm_plugin.trainers.paper.cli:main",
                  "the paper's experiments on the synthetic world: `reproduce transfer|budgets|...|all`"),
}


def strategies_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="prm-plugin strategies", description="List registered search strategies."
    )
    parser.add_argument("--params", action="store_true", help="also list each strategy's parameters")
    args = parser.parse_args(list(argv))
    from prm_plugin.plugins import list_strategies
    from prm_plugin.strategy import param_names

    regs = list_strategies()
    if not regs:
        print("No strategies registered.")
        return 0
    width = max(len(n) for n in regs)
    for name in sorted(regs):
        reg = regs[name]
        print(f"{name:<{width}}  {reg.source}")
        if args.params:
            print(f"{'':<{width}}  params: {', '.join(param_names(reg.obj.Params))}")
    return 0


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: prm-plugin COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'prm-plugin COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from prm_plugin import __version__

        print(f"prm-plugin {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"prm-plugin: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    from prm_plugin.plugins import PluginError, UnknownNameError

    try:
        return int(func(rest) or 0)
    except (PluginError, UnknownNameError) as exc:
        print(f"prm-plugin {name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
