"""Turning lm-eval ``generate_until`` requests into search ``Problem``s.

lm-eval hands the model one ``Instance`` per sample, repeated ``repeats`` times in
the request list (the same object each time). Each occurrence becomes one ``Job``:
its own search, with the strategy seed offset by the repeat index so repeats are
independent samples rather than copies.

Under data parallelism lm-eval pads a rank that has fewer requests than the others with
extra copies of its last request (so every rank runs the same number of batches); a
copy beyond the request's ``repeats`` is such padding (only then: a single process may repeat a request freely). It is marked (``Job.padding_of``)
and answered with the real request's answer instead of being searched again.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from prm_plugin.integrations.traces import prompt_hash
from prm_plugin.search import Problem

logger = logging.getLogger(__name__)

#: gen_kwargs keys prm_guided understands; any other key is reported once, not used.
KNOWN_GEN_KWARGS = ("until", "max_gen_toks", "do_sample", "temperature", "top_p")
QUESTION_FIELD = "prm_question"
DOMAIN_FIELD = "prm_domain"
#: A task's recommended search temperature (the world's tasks set it): used when the
#: task's gen_kwargs do not sample and ``temperature=`` is not in model_args.
TEMPERATURE_FIELD = "prm_temperature"


@dataclass
class Job:
    """One search to run (or to resume from the store)."""

    index: int  # position in the request list
    task: str
    doc_id: int | None
    repeat: int
    context: str
    gen_kwargs: dict[str, Any]
    problem: Problem
    temperature: float | None  # from gen_kwargs when they ask for sampling, else the doc's prm_temperature
    top_p: float | None
    key: str = ""
    #: lm-eval's padding: the index of the job this copy repeats (not searched); else None.
    padding_of: int | None = None

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(self.context)


def check_gen_kwargs(task: str, raw: dict[str, Any]) -> None:
    """Refuse gen_kwargs lm-eval's helpers would choke on (or silently misread), naming
    the key: ``until`` a non-empty string or list of them; token caps integers >= 1;
    ``temperature`` a finite number >= 0; ``top_p`` in (0, 1]; ``do_sample`` a boolean.

    >>> check_gen_kwargs("t", {"until": ["\\n\\n"], "max_gen_toks": 64, "temperature": 0.0})
    >>> check_gen_kwargs("t", {"max_gen_toks": "lots"})
    Traceback (most recent call last):
    ValueError: t: gen_kwargs max_gen_toks='lots' must be an integer >= 1. Fix the task's generation_kwargs (or --gen_kwargs).
    """

    def bad(key: str, want: str) -> ValueError:
        return ValueError(f"{task}: gen_kwargs {key}={raw[key]!r} must be {want}. Fix the task's "
                          "generation_kwargs (or --gen_kwargs).")

    until = raw.get("until")
    if until is not None:
        items = [until] if isinstance(until, str) else until if isinstance(until, list) else None
        if items is None or not all(isinstance(s, str) and s for s in items):
            raise bad("until", "a non-empty string or a list of non-empty strings")
    for key in ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens"):
        count = _number(raw.get(key), int)
        if raw.get(key) is not None and (count is None or count < 1):
            raise bad(key, "an integer >= 1")
    temperature = _number(raw.get("temperature"), float)
    if "temperature" in raw and (temperature is None or temperature < 0):
        raise bad("temperature", "a finite number >= 0")
    top_p = _number(raw.get("top_p"), float)
    if "top_p" in raw and (top_p is None or not 0 < top_p <= 1):
        raise bad("top_p", "a number in (0, 1]")
    if raw.get("do_sample") is not None and not isinstance(raw["do_sample"], bool):
        raise bad("do_sample", "true or false")


def _number(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` when it is one (or a string of one) and finite, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if kind is int and isinstance(value, float) and not value.is_integer():
        return None
    try:  # as lm-eval converts: int("12") and int(12.0), not int("1e3")
        out = int(value) if kind is int else float(value)
    except (ValueError, OverflowError):
        return None
    return out if math.isfinite(out) else None


class JobBuilder:
    """Builds jobs; remembers which warnings it already gave."""

    def __init__(self, *, question_field: str | None, default_domain: str,
                 default_max_gen_toks: int, eos: str | None) -> None:
        self.question_field = question_field
        self.default_domain = default_domain
        self.default_max_gen_toks = default_max_gen_toks
        self.eos = eos
        self._warned: set[str] = set()

    def build(self, requests: list[Any], padded: bool = False) -> list[Job]:
        """One job per request; ``padded``: the list may hold lm-eval's data-parallel padding
        (copies beyond a request's ``repeats``), which becomes ``padding_of`` jobs."""
        seen: Counter[int] = Counter()
        first: dict[tuple[int, int], int] = {}
        jobs = []
        for index, req in enumerate(requests):
            repeat = seen[id(req)]
            seen[id(req)] += 1
            repeats = getattr(req, "repeats", None)
            if padded and isinstance(repeats, int) and 1 <= repeats <= repeat:
                job = self._job(index, req, repeat % repeats)
                job.padding_of = first[(id(req), repeat % repeats)]
            else:
                job = self._job(index, req, repeat)
                first[(id(req), repeat)] = index
            jobs.append(job)
        return jobs

    def _job(self, index: int, req: Any, repeat: int) -> Job:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        context, raw = req.args[0], req.args[1]
        if not isinstance(raw, dict):
            raise TypeError(f"generate_until expects (context, gen_kwargs dict); got {type(raw).__name__}.")
        task = req.task_name or "unknown_task"
        check_gen_kwargs(task, raw)
        kwargs = dict(normalize_gen_kwargs(raw, self.default_max_gen_toks))
        until = handle_stop_sequences(kwargs.pop("until", None), eos=self.eos)
        max_tokens = int(kwargs.pop("max_gen_toks"))
        self._warn_unknown(task, kwargs)
        sampling = bool(kwargs.get("do_sample")) and float(kwargs.get("temperature", 0.0)) > 0
        doc = req.doc if isinstance(req.doc, dict) else {}
        problem = Problem(
            prompt=context,
            question=self._question(task, doc, context),
            stop=list(until),
            max_tokens=max_tokens,
            domain=str(doc.get(DOMAIN_FIELD) or self.default_domain),
            doc=doc,
            uid=f"{task}/{req.doc_id}/{repeat}",
        )
        return Job(
            index=index, task=task, doc_id=req.doc_id, repeat=repeat, context=context,
            gen_kwargs=raw, problem=problem,
            temperature=float(kwargs["temperature"]) if sampling else _recommended_temperature(task, doc),
            top_p=float(kwargs["top_p"]) if sampling and "top_p" in kwargs else None,
        )

    def _question(self, task: str, doc: dict[str, Any], context: str) -> str:
        if isinstance(doc.get(QUESTION_FIELD), str):
            return str(doc[QUESTION_FIELD])
        if self.question_field:
            if self.question_field not in doc:
                raise KeyError(
                    f"question_field={self.question_field!r} is not a field of {task}'s docs "
                    f"(fields: {', '.join(sorted(doc)) or 'none'}). Set question_field to the doc "
                    "field that holds the problem text."
                )
            return str(doc[self.question_field])
        self._warn_once(
            f"q:{task}",
            f"{task}: its docs carry no '{QUESTION_FIELD}' field and question_field is unset, so the "
            "PRM sees the whole prompt as the question. Pass question_field=<doc field> in model_args.",
        )
        return context

    def _warn_unknown(self, task: str, kwargs: dict[str, Any]) -> None:
        unknown = sorted(k for k in kwargs if k not in KNOWN_GEN_KWARGS)
        if unknown:
            self._warn_once(
                f"g:{task}:{unknown}",
                f"{task}: prm_guided does not use gen_kwargs {', '.join(unknown)} (the search "
                "strategy controls sampling; see the strategy's parameters).",
            )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)


def _recommended_temperature(task: str, doc: dict[str, Any]) -> float | None:
    value = doc.get(TEMPERATURE_FIELD)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10:
        raise ValueError(
            f"{task}: doc field {TEMPERATURE_FIELD}={value!r} must be a number in (0, 10], the search "
            "temperature the task recommends; fix the task's process_docs or drop the field."
        )
    return float(value)
