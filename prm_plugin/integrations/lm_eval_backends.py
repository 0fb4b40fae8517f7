"""The policy, PRM, tokenizer and loglikelihood scorer behind ``prm_guided``.

``policy=hf`` / ``policy=vllm`` / ``policy=openai`` use this package's policies (the last
one any OpenAI-compatible completions server); ``policy=evalplus:<backend>`` wraps an
EvalPlus decoder (``EvalPlusPolicy``, whole solutions only); any other name is an
lm-eval model, built like ``--model <name>`` would build it and wrapped by
``LMEvalPolicy``. Loglikelihood requests go to an lm-eval model: the wrapped one, or
for ``policy=hf`` an ``HFLM`` over the policy's own model and tokenizer (no second
copy of the weights), built on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from prm_plugin.integrations.lm_eval_config import HARNESS_KEYS, ModelSettings, SplitArgs

logger = logging.getLogger(__name__)


@dataclass
class Backends:
    """What a ``PRMGuidedLM`` runs on."""

    policy: Any
    prm: Any
    policy_name: str
    prm_name: str | None
    settings: ModelSettings
    wrapped: Any = None  # the lm-eval LM behind policy=<lm-eval name>
    _scorer: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)

    # -- tokenizer / chat template --------------------------------------------------
    def tokenizer(self, required: bool = True) -> Any:
        if self._tokenizer is None:
            source = self.wrapped if self.wrapped is not None else self.policy
            self._tokenizer = getattr(source, "tokenizer", None)
            # Loading one from the Hub only when it is needed (chat templates), never for
            # the optional uses (EOS string, lm-eval's tokenizer report).
            if self._tokenizer is None and required and self.settings.pretrained and self.wrapped is None:
                from prm_plugin._hf_compat import load_tokenizer

                self._tokenizer = load_tokenizer(self.settings.pretrained)
        if self._tokenizer is None and required:
            raise ValueError(
                f"policy={self.policy_name} exposes no tokenizer, so chat templates cannot be applied. "
                "Give pretrained=<path> or drop --apply_chat_template."
            )
        return self._tokenizer

    def tokenizer_name(self) -> str:
        if self.wrapped is not None:
            return str(self.wrapped.tokenizer_name)
        return str(getattr(self.tokenizer(), "name_or_path", self.policy_name)).replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool) -> str:
        if getattr(self.policy, "formats_prompt", False):
            raise ValueError(
                f"policy={self.policy_name} wraps every prompt in EvalPlus's own chat prompt, so a chat template "
                "applied first would be applied twice. Drop --apply_chat_template, or give "
                "policy.force_base_prompt=true (hf, vllm) to have it continue the templated prompt."
            )
        if self.wrapped is not None:
            return str(self.wrapped.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt))
        tok = self.tokenizer()
        if not getattr(tok, "chat_template", None):
            raise ValueError(
                f"--apply_chat_template was given but the tokenizer of {self.settings.pretrained!r} has no "
                "chat template. Drop --apply_chat_template or use a chat model."
            )
        return str(tok.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        ))

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if self.wrapped is not None:
            return self.wrapped.chat_template(chat_template)
        if chat_template is False or chat_template is None:
            return None
        template = getattr(self.tokenizer(required=False), "chat_template", None)
        if isinstance(template, dict):
            name = chat_template if isinstance(chat_template, str) else "default"
            if name not in template:
                raise ValueError(f"Chat template {name!r} not found; available: {', '.join(sorted(template))}.")
            return str(template[name])
        return template if isinstance(template, str) else None

    def eos_string(self) -> str | None:
        if self.wrapped is not None:
            try:
                return str(self.wrapped.tok_decode(self.wrapped.eot_token_id, skip_special_tokens=False))
            except Exception:
                return None
        eos = getattr(self.tokenizer(required=False), "eos_token", None)
        return eos if isinstance(eos, str) and eos else None

    # -- loglikelihood ------------------------------------------------------------
    def scorer(self) -> Any:
        """The lm-eval model that answers loglikelihood requests (built lazily)."""
        if self._scorer is None:
            self._scorer = self._build_scorer()
        return self._scorer

    def _build_scorer(self) -> Any:
        if self.wrapped is not None:
            return self.wrapped
        s = self.settings
        if self.policy_name == "hf" and hasattr(self.policy, "model") and hasattr(self.policy, "tokenizer"):
            from lm_eval.models.huggingface import HFLM

            return HFLM(pretrained=self.policy.model, tokenizer=self.policy.tokenizer,
                        batch_size=s.batch_size or 1)
        if self.policy_name in ("hf", "vllm") and s.pretrained:
            from lm_eval.api.registry import get_model

            logger.warning("prm_guided: loading a second copy of %s for loglikelihood requests.", s.pretrained)
            extra = {k: getattr(s, k) for k in HARNESS_KEYS if getattr(s, k) is not None}
            return get_model(self.policy_name).create_from_arg_obj({"pretrained": s.pretrained}, extra)
        raise NotImplementedError(
            "prm_guided answers loglikelihood requests through the wrapped model, but this policy "
            f"({self.policy_name}) has none. Use policy=hf or policy=<lm-eval model> for loglikelihood tasks."
        )


def build_backends(
    settings: ModelSettings, split: SplitArgs, *, policy_obj: Any, prm_obj: Any, needs_prm: bool,
    strategy_name: str, step_delimiter: str | None,
) -> Backends:
    """Build (or adopt) the policy and PRM the settings ask for."""
    wrapped = None
    native = {"on_overflow": settings.on_overflow, **split.policy_kwargs}
    if policy_obj is not None:
        policy, policy_name = policy_obj, type(policy_obj).__name__
    elif settings.policy == "hf":
        policy, policy_name = _hf_policy(settings, native), "hf"
    elif settings.policy == "vllm":
        policy, policy_name = _vllm_policy(settings, native), "vllm"
    elif settings.policy == "openai":
        policy, policy_name = _openai_policy(settings, native), "openai"
    elif settings.evalplus_backend is not None:
        policy, policy_name = _evalplus_policy(settings, split.policy_kwargs), settings.policy
    else:
        if settings.on_overflow != "truncate":
            logger.warning("prm_guided: on_overflow=%s applies to the PRM only: the lm-eval model %s handles "
                           "long prompts itself (lm-eval's HF model cuts them from the left).",
                           settings.on_overflow, settings.policy)
        wrapped = _lm_eval_model(settings, split.passthrough)
        from prm_plugin.integrations.lm_eval_policy import LMEvalPolicy

        policy, policy_name = LMEvalPolicy(wrapped, **split.policy_kwargs), settings.policy
    prm, prm_name = prm_obj, type(prm_obj).__name__ if prm_obj is not None else None
    if prm is None and settings.prm:
        prm, prm_name = _load_prm(settings, split.prm_kwargs), settings.prm
    if prm is None and needs_prm:  # SearchSession.build checked this before loading anything
        raise RuntimeError(f"strategy={strategy_name} needs a PRM, and none was built.")
    if prm is not None:
        check_separator(prm, step_delimiter)
    return Backends(policy=policy, prm=prm, policy_name=policy_name, prm_name=prm_name,
                    settings=settings, wrapped=wrapped)


def check_separator(prm: Any, step_delimiter: str | None) -> None:
    """Refuse an explicit ``step_delimiter`` that contradicts a PRM trained on text steps.

    A PRM whose separator is plain whitespace (value-head PRMs, TRL ``"\\n"``) was
    trained on steps delimited by exactly that text; splitting the policy's answers
    elsewhere would feed it steps it never saw. Tag-style separators (``<extra_0>``,
    `` ки``) are inserted by the PRM itself and fit any delimiter.
    """
    separator = getattr(prm, "step_separator", None)
    if step_delimiter is None or not isinstance(separator, str) or not separator or separator.strip():
        return
    if separator != step_delimiter:
        raise ValueError(
            f"step_delimiter={step_delimiter!r} does not match the PRM's step separator {separator!r}: the "
            f"PRM was trained on steps separated by {separator!r}. Drop step_delimiter (the domain default "
            f"is used) or set step_delimiter={separator.encode('unicode_escape').decode()}."
        )


def _device(settings: ModelSettings) -> str | None:
    device = settings.device
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            logger.warning("prm_guided: device=%s but CUDA is not available; using the CPU.", device)
            return "cpu"
    return device


def _hf_policy(settings: ModelSettings, kwargs: dict[str, Any]) -> Any:
    if not settings.pretrained:
        raise ValueError("policy=hf needs pretrained=<path or Hub id> in model_args.")
    from prm_plugin.policy.hf import HFPolicy

    return HFPolicy.from_pretrained(settings.pretrained, device=_device(settings), dtype=settings.dtype, **kwargs)


def _vllm_policy(settings: ModelSettings, kwargs: dict[str, Any]) -> Any:
    if not settings.pretrained:
        raise ValueError("policy=vllm needs pretrained=<path or Hub id> in model_args.")
    from prm_plugin.policy.vllm import VLLMPolicy

    return VLLMPolicy.from_pretrained(settings.pretrained, device=_device(settings), dtype=settings.dtype, **kwargs)


def _openai_policy(settings: ModelSettings, kwargs: dict[str, Any]) -> Any:
    if not settings.pretrained:
        raise ValueError("policy=openai needs pretrained=<the served model's name> in model_args.")
    if not settings.base_url:
        raise ValueError("policy=openai needs base_url=<the server's API root, e.g. http://127.0.0.1:8000/v1>.")
    from prm_plugin.policy.openai import OpenAIPolicy

    return OpenAIPolicy.from_settings(settings.base_url, settings.pretrained, tokenizer=settings.tokenizer,
                                      api_key=settings.api_key, **kwargs)


def _evalplus_policy(settings: ModelSettings, kwargs: dict[str, Any]) -> Any:
    from prm_plugin.policy.evalplus import EvalPlusPolicy

    if settings.on_overflow != "truncate":
        logger.warning("prm_guided: on_overflow=%s applies to the PRM only: EvalPlus's decoders handle long "
                       "prompts themselves.", settings.on_overflow)
    backend = settings.evalplus_backend
    assert backend is not None
    own = {"base_url": settings.base_url} if settings.base_url else {}
    if settings.dtype and "dtype" not in kwargs:
        own["dtype"] = settings.dtype
    return EvalPlusPolicy.from_settings(backend, settings.pretrained, tokenizer=settings.tokenizer,
                                        api_key=settings.api_key, **{**own, **kwargs})


def _lm_eval_model(settings: ModelSettings, passthrough: dict[str, Any]) -> Any:
    from lm_eval.api.registry import get_model

    try:
        cls = get_model(settings.policy)
    except ValueError as exc:
        raise ValueError(
            f"policy={settings.policy!r} is neither hf, vllm nor a registered lm-eval model. {exc}"
        ) from None
    args = dict(passthrough)
    if settings.pretrained is not None:
        args.setdefault("pretrained", settings.pretrained)
    extra = {k: getattr(settings, k) for k in HARNESS_KEYS if getattr(settings, k) is not None}
    try:
        return cls.create_from_arg_obj(args, extra)
    except TypeError as exc:
        raise ValueError(
            f"policy={settings.policy} rejected its model_args {sorted(args)}: {exc}. Keys that are neither "
            "prm_guided settings nor strategy parameters are passed to the wrapped model."
        ) from exc


def _load_prm(settings: ModelSettings, kwargs: dict[str, Any]) -> Any:
    from prm_plugin.prm.load import is_url, load_prm

    assert settings.prm is not None
    try:
        if is_url(settings.prm):  # a vLLM server's /pooling endpoint
            return load_prm(settings.prm, family=settings.prm_family, step_separator=settings.prm_step_separator,
                            **{"on_overflow": settings.on_overflow, "tokenizer": settings.prm_tokenizer,
                               "api_key": settings.api_key, **kwargs})
        if settings.prm_backend == "vllm":  # vLLM places the model itself
            return load_prm(settings.prm, family=settings.prm_family, dtype=settings.dtype,
                            step_separator=settings.prm_step_separator, backend="vllm", **kwargs)
        return load_prm(settings.prm, family=settings.prm_family, device=_device(settings),
                        dtype=settings.dtype, step_separator=settings.prm_step_separator,
                        **{"on_overflow": settings.on_overflow, **kwargs})
    except ValueError as exc:
        raise ValueError(f"prm={settings.prm}: {exc}") from exc
