"""Hook specifications of the ``prm_plugin`` plugin system.

A plugin is a module (or object) with functions decorated by ``@prm_plugin.hookimpl``
whose names match the specs below; it is found through the ``prm_plugin`` entry point
group. Each hook receives a ``register`` callback and calls it once per thing it adds.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("prm_plugin")
hookimpl = pluggy.HookimplMarker("prm_plugin")


@hookspec
def register_strategies(register: Callable[[type], None]) -> None:
    """Register search strategy classes: ``register(MyStrategy)``.

    A strategy class has a non-empty ``name``, a ``Params`` dataclass and a
    ``search(problems, policy, prm, budget)`` method (see ``prm_plugin.strategy``).
    """


@hookspec
def register_reward_models(register: Callable[[type], None]) -> None:
    """Register PRM families: ``register(MyFamily)``.

    A family class has a non-empty ``name``, ``detect(info) -> bool`` used by
    ``load_prm`` to recognise a checkpoint, and ``load(path, **overrides)``.
    """


@hookspec
def register_answer_keys(register: Callable[..., None]) -> None:
    """Register answer keys for majority voting: ``register(MyAnswerKey)``.

    An answer key class has a non-empty ``domain`` (``"math"``, ``"code"``, ...),
    ``extract(text, problem)`` and ``equivalent(a, b)``.
    """

