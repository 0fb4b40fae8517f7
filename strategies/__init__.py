"""Built-in search strategies, one module each, registered through the ``prm_plugin``
entry point group exactly like a third-party plugin (see ``pyproject.toml``).

Nothing here imports torch or vllm: strategies talk to policies and PRMs only through
``prm_plugin.policy.base.Policy`` and ``prm_plugin.prm.base.RewardModel``.
"""
