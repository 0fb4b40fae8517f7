"""The search flags of the ``prm-plugin`` commands (``--policy``, ``--prm``, ``--strategy``,
``--n``, ``--model-args``, ...), public for commands outside this package
(``prm-plugin serve``); see ``_cli_common`` for what each flag maps onto."""

from prm_plugin.integrations._cli_common import (
    FLAG_KEYS,
    add_search_flags,
    search_args,
    to_model_args,
)

__all__ = ["FLAG_KEYS", "add_search_flags", "search_args", "to_model_args"]
