"""The import hook that adds `--backend prm_guided` to the stock EvalPlus scripts.

The interpreter-start behaviour runs in fresh interpreters (the .pth acts once, at
start); the wrappers' delegation is checked in-process with stand-ins for EvalPlus's
functions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

from prm_plugin.integrations import _evalplus_hook, _lm_eval_hook

REPO = Path(__file__).resolve().parents[1]
HOOK_ENVS = (_lm_eval_hook.DISABLE_ENV, _lm_eval_hook.EVALPLUS_DISABLE_ENV)


def run_python(code: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in HOOK_ENVS}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=120, **kwargs)


def test_evalplus_gets_the_backend_and_interpreter_start_imports_nothing():
    out = run_python("""
        import sys
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("prm_plugin", "evalplus", "torch")))
        import evalplus.codegen as codegen, evalplus.provider as provider
        print(provider.make_model._prm_plugin_wrapped, codegen.make_model is provider.make_model,
              codegen.codegen._prm_plugin_wrapped)
        print("prm_plugin.integrations.evalplus" in sys.modules, "torch" in sys.modules)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "True True True", "False False"]


def test_evalplus_switch_turns_only_the_evalplus_part_off():
    out = run_python("""
        import evalplus.codegen as codegen, evalplus.provider as provider
        from lm_eval.api.registry import get_model
        get_model("hf")
        print(hasattr(provider.make_model, "_prm_plugin_wrapped"), hasattr(codegen.codegen, "_prm_plugin_wrapped"),
              get_model("prm_guided").__name__)
    """, env={_lm_eval_hook.EVALPLUS_DISABLE_ENV: "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False PRMGuidedLM"


def test_lm_eval_switch_leaves_evalplus_hooked():
    out = run_python("""
        import evalplus.provider as provider
        import lm_eval.models
        from lm_eval.api.registry import model_registry
        print(provider.make_model._prm_plugin_wrapped, "prm_guided" in model_registry)
    """, env={_lm_eval_hook.DISABLE_ENV: "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True False"


def test_both_switches_skip_the_hook_entirely():
    out = run_python("""
        import sys
        print([type(f).__name__ for f in sys.meta_path if getattr(f, "_prm_plugin_import_hook", False)])
    """, env={_lm_eval_hook.DISABLE_ENV: "1", _lm_eval_hook.EVALPLUS_DISABLE_ENV: "yes"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _fake_evalplus(root: Path, provider_source: str) -> Path:
    pkg = root / "evalplus"
    (pkg / "provider").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "provider" / "__init__.py").write_text(textwrap.dedent(provider_source))
    return root


def test_a_failing_patch_warns_but_evalplus_still_imports(tmp_path):
    # a make_model whose signature cannot be read: wrapping it fails inside patch()
    root = _fake_evalplus(tmp_path, """
        class Unreadable:
            def __call__(self, *args):
                return args
            @property
            def __signature__(self):
                raise RuntimeError("no signature")
        make_model = ORIGINAL = Unreadable()
        LOADED = True
    """)
    out = run_python("import evalplus.provider as p; print(p.LOADED, p.make_model is p.ORIGINAL)",
                     env={"PYTHONPATH": str(root)}, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "True True", out.stderr
    assert "adding the 'prm_guided' backend to evalplus.provider failed" in out.stderr
    assert "prm-plugin evalplus" in out.stderr and _lm_eval_hook.EVALPLUS_DISABLE_ENV in out.stderr


def _original_make_model(model, backend, dataset, batch_size=1, temperature=0.0, force_base_prompt=False,
                         instruction_prefix=None, response_prefix=None, dtype="bfloat16", trust_remote_code=False,
                         tp=1, base_url=None, attn_implementation="eager"):
    return ("original", model, backend, dataset, batch_size, temperature, dtype)


def test_other_backends_reach_evalplus_untouched(monkeypatch):
    make_model = _evalplus_hook.wrap_make_model(_original_make_model)
    assert make_model("m", "hf", dataset="mbpp", batch_size=4, temperature=0.2, dtype="float16") == (
        "original", "m", "hf", "mbpp", 4, 0.2, "float16")
    assert make_model(model="m", backend="vllm", dataset="humaneval") == (
        "original", "m", "vllm", "humaneval", 1, 0.0, "bfloat16")
    assert _evalplus_hook.wrap_make_model(make_model) is make_model  # idempotent


def test_prm_guided_builds_our_decoder_with_evalplus_arguments(monkeypatch):
    built = {}

    class FakeDecoder:
        def __init__(self, **kwargs):
            built.update(kwargs)

    monkeypatch.setitem(sys.modules, "prm_plugin.integrations.evalplus",
                        types.SimpleNamespace(PRMGuidedDecoder=FakeDecoder))
    make_model = _evalplus_hook.wrap_make_model(_original_make_model)
    decoder = make_model(model="pretrained=x,n=4", backend="prm_guided", dataset="humaneval", batch_size=2,
                         instruction_prefix="I", response_prefix="R")
    assert isinstance(decoder, FakeDecoder)
    assert built == {"model": "pretrained=x,n=4", "backend": "prm_guided", "dataset": "humaneval",
                     "batch_size": 2, "instruction_prefix": "I", "response_prefix": "R"}


def test_codegen_wrapper_tells_our_decoder_about_the_run_and_passes_others_through():
    seen = []

    def original(target_path, model, dataset, greedy=False, n_samples=1, id_range=None, version="default",
                 resume=True):
        seen.append((target_path, model, n_samples))
        return "done"

    class Ours:
        is_prm_guided = True

        def __init__(self):
            self.events = []

        def begin_run(self, **kwargs):
            self.events.append(("begin", kwargs))

        def end_run(self):
            self.events.append(("end",))

    codegen = _evalplus_hook.wrap_codegen(original)
    ours, theirs = Ours(), object()
    assert codegen("out/x.jsonl", ours, "mbpp", n_samples=5) == "done"
    assert codegen(target_path="out/y.jsonl", model=theirs, dataset="humaneval") == "done"
    assert ours.events == [("begin", {"target_path": "out/x.jsonl", "n_samples": 5, "dataset": "mbpp",
                                      "version": "default"}), ("end",)]
    assert seen == [("out/x.jsonl", ours, 5), ("out/y.jsonl", theirs, 1)]
    assert _evalplus_hook.last_target_path() == "out/x.jsonl"


def test_patch_reports_whether_the_module_offers_the_backend():
    with_make_model = types.ModuleType("evalplus.provider")
    with_make_model.make_model = _original_make_model  # type: ignore[attr-defined]
    assert _evalplus_hook.patch(with_make_model) is True
    assert with_make_model.make_model._prm_plugin_wrapped  # type: ignore[attr-defined]
    assert _evalplus_hook.patch(types.ModuleType("evalplus.provider")) is False


def test_already_imported_modules_are_patched_at_install():
    out = run_python("""
        import importlib, importlib.util
        import evalplus.codegen as codegen, evalplus.provider as provider
        spec = importlib.util.find_spec("prm_plugin.integrations._lm_eval_hook")
        hook = importlib.util.module_from_spec(spec); spec.loader.exec_module(hook)
        hook.uninstall()
        importlib.reload(provider); importlib.reload(codegen)   # fresh, unwrapped functions
        print(hasattr(provider.make_model, "_prm_plugin_wrapped"), hasattr(codegen.codegen, "_prm_plugin_wrapped"))
        hook.install()
        print(provider.make_model._prm_plugin_wrapped, codegen.codegen._prm_plugin_wrapped)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["False False", "True True"]
