"""``model_args`` of ``--model prm_guided``: parsing, validation and the run fingerprint.

Every key of ``--model_args`` lands in exactly one place:

* the model's own settings (``ModelSettings`` below: ``policy``, ``pretrained``,
  ``prm``, ``strategy``, ``n``, ``trace_path``, ``search_batch_size``, ...);
* the chosen strategy's ``Params`` (``temperature``, ``aggregation``,
  ``step_delimiter``, ``beam_width``, ...);
* ``policy.<key>=`` / ``prm.<key>=``: passed to ``HFPolicy.from_pretrained`` /
  ``VLLMPolicy`` / ``EvalPlusPolicy.from_settings`` (EvalPlus's ``make_model``) /
  ``load_prm`` as keyword arguments;
* with ``policy=<any lm-eval model name>``, every remaining key is passed to that
  model, like ``--model_args`` would be.

Anything else is an error that lists the valid keys for the chosen strategy.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prm_plugin.search import check_overflow_policy
from prm_plugin.strategy import params_from_kwargs

#: Policies implemented by this package (and ``evalplus:<backend>``); any other name is an
#: lm-eval model.
NATIVE_POLICIES = ("hf", "vllm", "openai")
#: ``policy=evalplus:<backend>``: an EvalPlus decoder (``prm_plugin.policy.evalplus``).
EVALPLUS_PREFIX = "evalplus:"
#: Keys lm-eval adds to every model's args (``--batch_size``, ``--device``, ...).
HARNESS_KEYS = ("batch_size", "max_batch_size", "device")


@dataclass
class ModelSettings:
    """The ``prm_guided`` model's own ``model_args``.

    Attributes:
        policy: ``hf`` (this package's HF policy), ``vllm``, ``openai`` (any
            OpenAI-compatible completions server: ``prm_plugin.policy.openai``),
            ``evalplus:<backend>`` (any model EvalPlus drives, whole solutions only:
            ``prm_plugin.policy.evalplus``; its ``make_model`` settings as ``policy.<key>=``),
            or any registered lm-eval model name, which is wrapped and receives the
            remaining model_args.
        pretrained: the policy model (path or Hub id); with ``policy=openai`` or an API
            backend of EvalPlus, the served model's name.
        base_url: ``policy=openai``: the server's API root (``http://host:8000/v1``);
            several replicas separated by ``|`` share the requests round-robin.
            ``policy=evalplus:openai``: the server EvalPlus talks to (one).
        api_key: ``policy=openai`` / ``evalplus:openai`` / a served PRM: default
            ``$OPENAI_API_KEY``.
        tokenizer: ``policy=openai``: a local path (or Hub id) of the policy's tokenizer,
            for token counts and context checks (default ``pretrained``);
            ``policy=evalplus:<API backend>``: the same, for token counts (none: unknown).
        prm: the PRM checkpoint (path or Hub id); its family is auto-detected. An
            ``http(s)://`` URL is a vLLM server's ``/pooling`` endpoint (``prm_plugin.prm.served``).
        prm_url: the same as ``prm=<URL>``.
        prm_tokenizer: a served PRM: a local copy of its checkpoint (config,
            ``prm_config.json``, tokenizer) to lay out its inputs (default: the served
            model's name, when that is a local folder).
        prm_family: force a PRM family instead of auto-detection.
        prm_step_separator: override the PRM's step separator (checked by ``load_prm``).
        prm_backend: ``hf`` (in-process) or ``vllm`` (vLLM's pooling runner, for
            token-classification PRMs: Qwen2.5-Math-PRM, ``prm-plugin export-prm`` output).
        strategy: a registered strategy name (``prm-plugin strategies`` lists them).
        n: the budget knob every strategy maps onto its shape (candidates / rollouts).
        max_policy_tokens: optional cap on policy tokens per problem.
        max_seconds: optional cap on seconds per problem.
        question_field: the doc field holding the question shown to the PRM, for tasks
            whose docs carry no ``prm_question`` field.
        domain: the domain of tasks whose docs carry no ``prm_domain`` field.
        max_gen_toks: the token cap when a task's gen_kwargs give none.
        trace_path: folder for per-task traces, the cost summary and the result store.
        resume: reuse finished problems from the result store under ``trace_path``.
        search_batch_size: problems per ``Strategy.search`` call (and per store flush).
        on_overflow: inputs longer than a model's context, for the PRM and the native
            policies (``hf``, ``vllm``): ``truncate`` (cut from the left; default),
            ``skip`` (a PRM query stays unscored, a policy prefix is not continued) or
            ``error``. ``prm.on_overflow=`` / ``policy.on_overflow=`` set one side only.
        strict: stop the run at the first problem that fails, instead of recording it
            with an empty answer and going on (``prm_plugin.integrations.faults``).
        device / dtype: where and how the native policy (and PRM) run.
        batch_size / max_batch_size: lm-eval's batch flags; passed to a wrapped lm-eval
            model (native policies take ``policy.batch_size=`` instead).
    """

    policy: str = "hf"
    pretrained: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    tokenizer: str | None = None
    prm: str | None = None
    prm_url: str | None = None
    prm_tokenizer: str | None = None
    prm_family: str | None = None
    prm_step_separator: str | None = None
    prm_backend: str = "hf"
    strategy: str = "bon"
    n: int = 8
    max_policy_tokens: int | None = None
    max_seconds: float | None = None
    question_field: str | None = None
    domain: str = "math"
    max_gen_toks: int = 256
    trace_path: str | None = None
    resume: bool = True
    search_batch_size: int = 8
    on_overflow: str = "truncate"
    strict: bool = False
    device: str | None = None
    dtype: str | None = None
    batch_size: int | str | None = None
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.search_batch_size < 1:
            raise ValueError(f"search_batch_size must be >= 1, got {self.search_batch_size}.")
        if self.max_gen_toks < 1:
            raise ValueError(f"max_gen_toks must be >= 1, got {self.max_gen_toks}.")
        if self.prm_backend not in ("hf", "vllm"):
            raise ValueError(f"prm_backend={self.prm_backend!r}: choose hf (in-process) or vllm (pooling runner).")
        check_overflow_policy(self.on_overflow)
        if self.prm_url:
            if self.prm and self.prm != self.prm_url:
                raise ValueError(f"prm={self.prm} and prm_url={self.prm_url}: give one of them.")
            self.prm = self.prm_url
        if self.policy == "openai" and not self.base_url:
            raise ValueError("policy=openai needs base_url=<the server's API root, e.g. http://127.0.0.1:8000/v1> "
                             "(several replicas separated by '|').")
        if self.policy == "prm_guided" or self.policy == EVALPLUS_PREFIX + "prm_guided":
            raise ValueError("policy=prm_guided would wrap itself; choose hf, vllm or another lm-eval model.")
        if self.policy == EVALPLUS_PREFIX:
            raise ValueError("policy=evalplus: needs a backend: policy=evalplus:<backend> (openai, hf, vllm, "
                             "anthropic, google, ...).")

    @property
    def evalplus_backend(self) -> str | None:
        """``openai`` for ``policy=evalplus:openai``; None for other policies."""
        return self.policy[len(EVALPLUS_PREFIX):] if self.policy.startswith(EVALPLUS_PREFIX) else None

    @property
    def wraps_lm_eval_model(self) -> bool:
        return self.policy not in NATIVE_POLICIES and self.evalplus_backend is None


@dataclass
class SplitArgs:
    """``model_args`` sorted by destination."""

    settings: ModelSettings
    strategy_params: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    prm_kwargs: dict[str, Any] = field(default_factory=dict)
    passthrough: dict[str, Any] = field(default_factory=dict)


def own_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(ModelSettings)]


def split_model_args(args: Mapping[str, Any], params_cls: type | None) -> SplitArgs:
    """Sort ``model_args`` by destination; unknown keys raise a ``ValueError``.

    ``params_cls`` is the strategy's ``Params`` dataclass (``None`` when the strategy is
    given as an instance, whose params are fixed).

    Example: ``{"strategy": "beam", "beam_width": "4", "prm.batch_size": 8}`` gives
    settings.strategy="beam", strategy_params={"beam_width": "4"} and
    prm_kwargs={"batch_size": 8}.
    """
    own = {f.name: f for f in dataclasses.fields(ModelSettings)}
    param_names = {f.name for f in dataclasses.fields(params_cls)} if params_cls else set()
    settings_kw: dict[str, Any] = {}
    out = SplitArgs(settings=ModelSettings())
    leftovers: dict[str, Any] = {}
    for key, value in args.items():
        if key.startswith("policy."):
            out.policy_kwargs[key[len("policy."):]] = backend_value(value)
        elif key.startswith("prm."):
            out.prm_kwargs[key[len("prm."):]] = backend_value(value)
        elif key in own:
            settings_kw[key] = value
        elif key in param_names:
            out.strategy_params[key] = value
        else:
            leftovers[key] = value
    out.settings = params_from_kwargs(ModelSettings, settings_kw)
    if leftovers and out.settings.wraps_lm_eval_model:
        out.passthrough = leftovers
    elif leftovers:
        raise ValueError(_unknown_key_message(next(iter(leftovers)), out.settings, param_names))
    return out


def backend_value(value: Any) -> Any:
    """A ``policy.<k>=`` / ``prm.<k>=`` value typed as lm-eval types model_args strings
    (EvalPlus's ``--model`` and the CLI flags arrive as plain strings): ``true``/``false``,
    ``none``, integers and floats are converted; quoted text stays a string.

    >>> [backend_value(v) for v in ("8", "-1", "0.5", "True", "none", "'8'", "cpu")]
    [8, -1, 0.5, True, None, '8', 'cpu']
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if text.lstrip("+-").isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return value


def _unknown_key_message(key: str, settings: ModelSettings, param_names: set[str]) -> str:
    valid = sorted(param_names) + own_keys()
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean: {close[0]}?" if close else ""
    return (
        f"Unknown model_args key {key!r} for prm_guided with strategy={settings.strategy}.{hint}\n"
        f"  strategy parameters: {', '.join(sorted(param_names)) or '(none)'}\n"
        f"  prm_guided settings: {', '.join(own_keys())}\n"
        "  policy.<key>=... and prm.<key>=... pass keyword arguments to the policy / load_prm."
    )


def fingerprint(parts: Mapping[str, Any]) -> str:
    """A stable hash of everything that can change a search's answer."""
    blob = json.dumps(parts, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def checkpoint_stamp(path: str | None) -> str | None:
    """A cheap fingerprint of a local checkpoint folder (file names, sizes, mtimes), so a
    checkpoint retrained in place never resumes the old one's results. Hub ids: None
    (their revision, when pinned, is part of the model_args already)."""
    if not path or not os.path.isdir(path):
        return None
    entries = sorted(
        (e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(path) if e.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()[:16]


def build_strategy_params(params_cls: type, values: Mapping[str, Any]) -> Any:
    """``params_from_kwargs`` with an error that names the strategy's valid keys."""
    try:
        return params_from_kwargs(params_cls, values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Bad strategy parameter in model_args: {exc}") from exc
