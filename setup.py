"""The one build step pyproject.toml cannot express: ship a top-level ``.pth`` file.

``prm_plugin_lm_eval.pth`` must sit at the root of site-packages (not inside the
package) for Python to run it at start-up; it registers ``prm_guided`` with the stock
``lm_eval`` CLI (see ``prm_plugin/integrations/_lm_eval_hook.py``). Everything else
about the build lives in pyproject.toml.

* Regular wheels: ``build_py`` copies the file to the root of ``build_lib``, which
  ``install_lib`` copies to the root of the wheel.
* Editable wheels (PEP 660, ``pip install -e .``): setuptools assembles the wheel from
  the directory its ``install`` command points at and ignores ``build_lib``, so in
  editable mode the file is written there instead.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_SOURCE = os.path.join("prm_plugin", "integrations", "prm_plugin_lm_eval.pth")


class BuildPyWithPth(build_py):
    """``build_py`` that also places the lm-eval ``.pth`` at the wheel root."""

    def run(self) -> None:
        super().run()
        self.copy_file(PTH_SOURCE, self._pth_target(), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs.append(self._pth_target())
        return outputs

    def _pth_target(self) -> str:
        if getattr(self, "editable_mode", False):
            root = self.get_finalized_command("install").install_lib
        else:
            root = self.build_lib
        return os.path.join(root, os.path.basename(PTH_SOURCE))


setup(cmdclass={"build_py": BuildPyWithPth})
