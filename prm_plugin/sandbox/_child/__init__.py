"""Code that runs inside the zygote and the sandboxed child.

Standard library only. The zygote imports this package as the top-level name ``_child``
(it starts with ``python -s -S`` and never imports ``prm_plugin``), while the parent and
the tests import the same files as ``prm_plugin.sandbox._child``; so modules here use
relative imports only.
"""
