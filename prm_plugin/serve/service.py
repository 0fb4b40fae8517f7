"""The search behind the endpoints: requests to problems, the batcher, OpenAI responses."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from prm_plugin.integrations.search_session import SearchSession
from prm_plugin.search import Cost, Problem, SearchResult
from prm_plugin.serve.batcher import Batcher, Pending, QueueFull
from prm_plugin.serve.config import ServeConfig
from prm_plugin.serve.errors import APIError, bad_request
from prm_plugin.serve.metrics import Metrics
from prm_plugin.serve.prompts import TextTools, cut_at_stop, last_user_text
from prm_plugin.serve.schemas import ChatCompletionRequest, CompletionRequest
from prm_plugin.serve.settings import Variant, Variants


@dataclass(frozen=True)
class Job:
    """One problem for the batcher: the search it belongs to, and the final-answer index."""

    session: SearchSession
    sample: int
    problem: Problem


@dataclass(frozen=True)
class Answer:
    result: SearchResult
    text: str
    finish_reason: str


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class SearchService:
    """One server's search: settings, prompts, batching and metrics.

    Args:
        session: the configured search (``SearchSession.build`` from the serve flags).
        config: the server's limits and batching settings.
    """

    def __init__(self, session: SearchSession, config: ServeConfig) -> None:
        self.session = session
        self.config = config
        self.variants = Variants(session, config)
        self.text = TextTools(session.tokenizer(), session.backends.policy.count_tokens)
        self.batcher: Batcher[Job, Answer] = Batcher(self._run, max_batch=config.max_batch,
                                                     wait_s=config.batch_wait_s, max_wait_s=config.batch_max_wait_s,
                                                     max_queue=config.max_queue,
                                                     on_batch=lambda size: self.metrics.batch_size.observe(size))
        self.metrics = Metrics(lambda: self.batcher.depth)
        self.started = int(time.time())

    # -- endpoints -------------------------------------------------------------------------
    async def complete(self, req: CompletionRequest, disconnected: Any) -> dict[str, Any]:
        """``/v1/completions``: one search per prompt and choice."""
        self._check(req, req.max_tokens)
        prompts = req.prompts()
        if not prompts or len(prompts) > self.config.max_prompts:
            raise bad_request(f"prompt must hold 1..{self.config.max_prompts} prompts, got {len(prompts)}.", "prompt")
        texts = [p if isinstance(p, str) else self.text.decode(p) for p in prompts]
        if any(not t for t in texts):
            raise bad_request("Every prompt must be non-empty text.", "prompt")
        questions = [req.prm_question or self.text.question(t) for t in texts]
        answers, variant = await self._search(req, texts, questions, req.max_tokens, disconnected)
        choices = [{"index": i, "text": a.text, "logprobs": None, "finish_reason": a.finish_reason,
                    "search": self._choice_ext(a, req.return_trace)} for i, a in enumerate(answers)]
        return self._response("cmpl", "text_completion", choices, texts, answers, variant)

    async def chat(self, req: ChatCompletionRequest, disconnected: Any) -> dict[str, Any]:
        """``/v1/chat/completions``: the policy's chat template, the last user turn as the question."""
        self._check(req, req.token_cap())
        messages = req.chat()
        prompt = self.text.chat_prompt(messages)
        question = req.prm_question or last_user_text(messages)
        answers, variant = await self._search(req, [prompt], [question], req.token_cap(), disconnected)
        choices = [{"index": i, "message": {"role": "assistant", "content": a.text}, "logprobs": None,
                    "finish_reason": a.finish_reason, "search": self._choice_ext(a, req.return_trace)}
                   for i, a in enumerate(answers)]
        return self._response("chatcmpl", "chat.completion", choices, [prompt], answers, variant)

    def describe(self) -> dict[str, Any]:
        """The served search, for ``/v1/models`` and ``/health``."""
        default = self.variants.resolve(None)
        return {**default.describe(), "policy": self.session.backends.policy_name,
                "pretrained": self.session.settings.pretrained, "prm": self.session.backends.prm_name,
                "domain": default.domain, "per_request_settings": self.variants.allowed(type(self.session.strategy)),
                "limits": {"max_n": self.config.max_n, "max_tokens": self.config.max_tokens,
                           "max_choices": self.config.max_choices, "max_batch": self.config.max_batch}}

    # -- pieces ----------------------------------------------------------------------------
    def _check(self, req: CompletionRequest | ChatCompletionRequest, max_tokens: int | None) -> None:
        c = self.config
        if req.model is not None and req.model != c.model_name:
            raise APIError(404, f"The model {req.model!r} does not exist on this server; it serves "
                                f"{c.model_name!r} (GET /v1/models).", param="model", code="model_not_found")
        unsupported = req.unsupported()
        if unsupported:
            raise bad_request(f"Not supported by prm-plugin serve: {'; '.join(unsupported)}.", None, "unsupported")
        if req.n > c.max_choices:
            raise bad_request(f"n={req.n} final answers exceed this server's limit of {c.max_choices} "
                              "(--max-choices). For a larger search budget, set search.n.", "n", "out_of_bounds")
        if max_tokens is not None and max_tokens > c.max_tokens:
            raise bad_request(f"max_tokens={max_tokens} exceeds this server's limit of {c.max_tokens} (--max-tokens).",
                              "max_tokens", "out_of_bounds")
        if len(req.stops()) > c.max_stop:
            raise bad_request(f"At most {c.max_stop} stop strings, got {len(req.stops())}.", "stop")

    async def _search(self, req: CompletionRequest | ChatCompletionRequest, prompts: Sequence[str],
                      questions: Sequence[str], max_tokens: int | None,
                      disconnected: Any) -> tuple[list[Answer], Variant]:
        variant = self.variants.resolve(req.search, seed=req.seed, temperature=req.temperature, top_p=req.top_p)
        session = variant.session
        rid = uuid.uuid4().hex[:12]
        items: list[tuple[Hashable, Job]] = []
        for i, (prompt, question) in enumerate(zip(prompts, questions, strict=True)):
            problem = Problem(prompt=prompt, question=question, stop=req.stops(), domain=variant.domain,
                              max_tokens=max_tokens or self.config.default_max_tokens, uid=f"{rid}/{i}", doc={})
            for j in range(req.n):
                items.append(((variant.key, j), Job(session, j, problem)))
        try:
            pendings = self.batcher.submit(items)
        except QueueFull as exc:
            raise APIError(503, f"The server is busy: {exc} Retry later.", code="server_busy") from None
        return await self._wait(pendings, disconnected), variant

    async def _wait(self, pendings: list[Pending[Job, Answer]], disconnected: Any) -> list[Answer]:
        gathered = asyncio.ensure_future(asyncio.gather(*(p.future for p in pendings), return_exceptions=True))
        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({gathered, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not gathered.done():
            self.batcher.cancel(pendings)
            gathered.cancel()
            self.metrics.disconnects.inc()
            raise ClientGone()
        outcomes = gathered.result()
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            self.batcher.cancel(pendings)
            self.metrics.failures.inc(len(failed))
            exc = failed[0]
            if isinstance(exc, ValueError):
                raise bad_request(f"The search rejected this request: {exc}", None, "search_rejected")
            what = str(exc) if isinstance(exc, SearchFailed) else f"{type(exc).__name__}: {exc}"
            raise APIError(500, f"The search failed: {what}", code="search_failed")
        return [o for o in outcomes if isinstance(o, Answer)]

    def _run(self, key: Hashable, jobs: list[Job]) -> list[Answer | BaseException]:
        """One batch on the search thread. The session isolates per-problem faults (a
        problem whose policy or PRM call failed comes back with ``error`` set); such a
        problem's request fails alone, with the original error's type and message."""
        first = jobs[0]
        results = first.session.search([j.problem for j in jobs], sample=first.sample)
        answers: list[Answer | BaseException] = []
        for job, result in zip(jobs, results, strict=True):
            self.metrics.searched(result.cost)
            if result.error is not None:
                answers.append(SearchFailed(f"{result.error['type']}: {result.error['message']} "
                                            f"(in the {result.error['where']})"))
                continue
            text, stopped = cut_at_stop(result.text, job.problem.stop)
            answers.append(Answer(result, text, "stop" if stopped else _finish_reason(result, job.problem)))
        return answers

    def _choice_ext(self, answer: Answer, trace: bool) -> dict[str, Any]:
        r = answer.result
        chosen = r.candidates[r.chosen] if r.chosen is not None and r.chosen < len(r.candidates) else None
        ext: dict[str, Any] = {"cost": r.cost.to_json(), "score": chosen.score if chosen else None,
                               "candidates": len(r.candidates)}
        if trace:
            full = r.to_json()
            ext.update(chosen=full["chosen"], candidate_list=full["candidates"], trace=full["trace"])
        return ext

    def _response(self, prefix: str, kind: str, choices: list[dict[str, Any]], prompts: Sequence[str],
                  answers: Sequence[Answer], variant: Variant) -> dict[str, Any]:
        prompt_tokens = sum(self.text.count(p) for p in prompts)
        completion_tokens = sum(self.text.count(a.text) for a in answers)
        return {
            "id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
            "model": self.config.model_name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "search": {**variant.describe(), "cost": _total([a.result.cost for a in answers])},
        }


class SearchFailed(RuntimeError):
    """One problem's search failed on a policy or PRM fault (the session isolated it)."""


def _finish_reason(result: SearchResult, problem: Problem) -> str:
    """``length`` when the chosen solution was cut by the token cap or left unfinished."""
    if result.chosen is None or result.chosen >= len(result.candidates):
        return "stop"
    chosen = result.candidates[result.chosen]
    return "length" if not chosen.finished or chosen.n_tokens >= problem.max_tokens else "stop"


def _total(costs: Sequence[Cost]) -> dict[str, Any]:
    """The costs of a request's searches added up."""
    total = Cost()
    for cost in costs:
        for name in ("policy_prefill_tokens", "policy_generated_tokens", "prm_tokens", "unique_tokens",
                     "unique_prompt_tokens", "policy_calls", "prm_calls", "seconds"):
            setattr(total, name, getattr(total, name) + getattr(cost, name))
    stopped = sorted({c.stopped_by for c in costs if c.stopped_by})
    total.stopped_by = ",".join(stopped) or None
    return total.to_json()
