"""The .pth import hook that registers `prm_guided` with the stock lm_eval CLI.

Each test runs a fresh interpreter: the hook acts at interpreter start and on the
first import of lm_eval.models, which an in-process test cannot redo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from prm_plugin.integrations import _lm_eval_hook

REPO = Path(__file__).resolve().parents[1]
PTH_SOURCE = REPO / "prm_plugin" / "integrations" / _lm_eval_hook.PTH_FILENAME


def run_python(code: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != _lm_eval_hook.DISABLE_ENV}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=120, **kwargs)


def pth_code_line() -> str:
    return next(line for line in PTH_SOURCE.read_text().splitlines() if line.startswith("import"))


def test_the_installed_pth_is_ours():
    installed = Path(sysconfig.get_path("purelib")) / _lm_eval_hook.PTH_FILENAME
    assert installed.is_file(), f"{installed} is missing: reinstall with `pip install -e .`"
    assert installed.read_text() == PTH_SOURCE.read_text()
    assert len([ln for ln in PTH_SOURCE.read_text().splitlines() if ln.startswith("import")]) == 1


def test_interpreter_start_installs_the_finder_without_importing_anything_heavy():
    out = run_python("""
        import sys
        print(any(getattr(f, "_prm_plugin_lm_eval_hook", False) for f in sys.meta_path))
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("prm_plugin", "lm_eval", "torch", "pluggy")))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["True", "[]"]


def test_lm_eval_models_gets_prm_guided_and_keeps_every_builtin():
    out = run_python("""
        import sys
        from lm_eval.api.registry import get_model, model_registry
        hf = get_model("hf")  # the registry is empty here: get_model imports lm_eval.models
        print(hf.__name__, model_registry._objs["prm_guided"])
        print(get_model("prm_guided").__name__, "vllm" in model_registry, "dummy" in model_registry)
        print(type(sys.modules["lm_eval.models"].__loader__).__name__)
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"HFLM {_lm_eval_hook.TARGET}"
    assert lines[1] == "PRMGuidedLM True True"
    assert lines[2] == "SourceFileLoader"  # the wrapper loader is not left behind


def test_the_environment_variable_turns_it_off():
    out = run_python("""
        import sys
        import lm_eval.models
        from lm_eval.api.registry import model_registry
        print(any(getattr(f, "_prm_plugin_lm_eval_hook", False) for f in sys.meta_path), "prm_guided" in model_registry)
    """, env={_lm_eval_hook.DISABLE_ENV: "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def _fake_prm_plugin(root: Path, hook_source: str) -> Path:
    (root / "prm_plugin" / "integrations").mkdir(parents=True)
    (root / "prm_plugin" / "__init__.py").write_text("")
    (root / "prm_plugin" / "integrations" / "_lm_eval_hook.py").write_text(hook_source)
    return root


@pytest.mark.parametrize(("hook_source", "reached"), [
    ("open('reached', 'w').close()\nraise RuntimeError('boom at import')", True),
    ("def install():\n    open('reached', 'w').close()\n    raise RuntimeError('boom in install')", True),
    ("this is not python", False),
])
def test_a_broken_hook_never_breaks_interpreter_start(tmp_path, hook_source, reached):
    root = _fake_prm_plugin(tmp_path, hook_source)
    out = run_python(f"exec({pth_code_line()!r}); print('alive')", env={"PYTHONPATH": str(root)}, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "alive", out.stderr
    assert (tmp_path / "reached").exists() == reached  # the broken hook really ran


def _fake_lm_eval(root: Path, registry_source: str) -> Path:
    pkg = root / "lm_eval"
    (pkg / "models").mkdir(parents=True)
    (pkg / "api").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "api" / "__init__.py").write_text("")
    (pkg / "api" / "model.py").write_text("class LM:\n    pass\n")
    (pkg / "api" / "registry.py").write_text(textwrap.dedent(registry_source))
    (pkg / "models" / "__init__.py").write_text("from lm_eval.api import registry\nregistry.BUILTINS_DONE = True\n")
    return root


def test_a_failing_registration_warns_but_lm_eval_still_imports(tmp_path):
    root = _fake_lm_eval(tmp_path, """
        class Broken:
            def __contains__(self, name):
                return False
            def register(self, *a, **k):
                raise RuntimeError("registry is frozen")
        model_registry = Broken()
    """)
    out = run_python("import lm_eval.models, lm_eval.api.registry as r; print(r.BUILTINS_DONE)",
                     env={"PYTHONPATH": str(root)}, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
    assert "registering 'prm_guided' failed" in out.stderr and "prm-plugin lm-eval" in out.stderr


def test_old_dict_registries_get_a_shim_that_builds_the_real_model(tmp_path):
    root = _fake_lm_eval(tmp_path, "MODEL_REGISTRY = {'hf': object}\n")
    out = run_python("""
        import lm_eval.models
        from lm_eval.api.registry import MODEL_REGISTRY
        shim = MODEL_REGISTRY["prm_guided"]
        from lm_eval.api.model import LM
        print(sorted(MODEL_REGISTRY), issubclass(shim, LM))
    """, env={"PYTHONPATH": str(root)}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['hf', 'prm_guided'] True"


def test_shim_construction_returns_the_real_class(monkeypatch):
    import lm_eval.api.model

    shim = _lm_eval_hook._shim_class()
    assert issubclass(shim, lm_eval.api.model.LM)
    from prm_plugin.integrations import lm_eval as integration

    made = {}

    class Real:
        def __init__(self, **kwargs):
            made.update(kwargs)

    monkeypatch.setattr(integration, "PRMGuidedLM", Real)
    obj = shim(strategy="greedy")
    assert isinstance(obj, Real) and made == {"strategy": "greedy"}
