"""``lm_eval --model prm_guided``: reward-guided search behind lm-eval's ``LM`` API.

::

    lm_eval --model prm_guided \\
        --model_args pretrained=Qwen/Qwen2.5-Math-1.5B-Instruct,prm=Qwen/Qwen2.5-Math-PRM-7B,strategy=beam,n=16,beam_width=4,trace_path=out/traces \\
        --tasks math500_prm --include_path "$(prm-plugin task-path)" --apply_chat_template

``generate_until`` turns requests into ``Problem``s, runs the strategy over batches
of ``search_batch_size`` problems, and returns each search's final text.
``loglikelihood`` requests go to the wrapped model (for ``policy=hf`` an lm-eval
``HFLM`` sharing the policy's weights, built only when first needed).

The PRM's question comes from the doc field ``prm_question`` (this package's tasks
add it in ``process_docs``), else from the doc field named by ``question_field=``,
else the whole prompt (with a warning). The domain comes from the doc field
``prm_domain``, else ``domain=`` (default ``math``).

With ``trace_path=DIR``: per-task traces in ``DIR/<task>.traces.jsonl`` keyed by
lm-eval's ``prompt_hash``, ``DIR/cost_summary.json``, and a result store in
``DIR/store/`` keyed by the full configuration + request, so a killed run resumes
without recomputing finished problems (``resume=false`` recomputes everything).

A problem whose search fails (``prm_plugin.integrations.faults``) is answered with an
empty string, its trace line carries the ``error``, it is left out of the store, and
the process exits with status 3 once lm-eval has written its results (``strict=true``:
the first failure stops the run). Ctrl-C or SIGTERM stops the run between batches:
finished batches are in the store, the traces of finished problems are written (valid
JSONL), and a rerun with ``resume=true`` completes the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  # built-ins first: registering early would hide them
from lm_eval.api.model import LM
from tqdm import tqdm

from prm_plugin.integrations import _lm_eval_hook
from prm_plugin.integrations.faults import FAILURES, Interrupts, interruptible
from prm_plugin.integrations.lm_eval_backends import Backends
from prm_plugin.integrations.lm_eval_jobs import Job, JobBuilder
from prm_plugin.integrations.result_store import ResultStore, request_key
from prm_plugin.integrations.search_session import SearchSession
from prm_plugin.integrations.traces import CostSummary, TraceWriter
from prm_plugin.search import Budget, SearchResult

logger = logging.getLogger(__name__)
_lm_eval_hook.register()  # so `prm_guided` exists even with the .pth hook disabled


class PRMGuidedLM(LM):
    """An lm-eval model that answers ``generate_until`` with a PRM-guided search.

    Args:
        policy: ``"hf"`` (default), ``"vllm"``, any registered lm-eval model name, or a
            ``Policy`` object (Python use).
        prm: PRM path / Hub id, a ``RewardModel`` object, or None for strategies that
            need none (``greedy``, ``majority``).
        strategy: a registered strategy name or a ``Strategy`` instance.
        **model_args: see ``prm_plugin.integrations.lm_eval_config.ModelSettings``,
            plus the strategy's parameters and ``policy.<k>``/``prm.<k>`` keywords.

    The settings, strategy, backends, seeds and sampling rules are the harness session's
    (``SearchSession``), the same object EvalPlus and LiveCodeBench runs use.
    """

    def __init__(self, policy: Any = "hf", prm: Any = None, strategy: Any = "bon", **model_args: Any) -> None:
        super().__init__()
        named = {k: v for k, v in (("policy", policy), ("prm", prm), ("strategy", strategy)) if isinstance(v, str)}
        self.session = SearchSession.build(
            {**named, **model_args}, harness="lm-eval",
            policy=None if isinstance(policy, str) else policy,
            prm=None if prm is None or isinstance(prm, str) else prm,
            strategy=None if isinstance(strategy, str) else strategy,
        )
        s = self.settings
        folder = Path(s.trace_path) if s.trace_path else None
        self.traces = TraceWriter(folder) if folder else None
        self.store = ResultStore(folder / "store", self.config_fingerprint, self.config) if folder else None
        self._jobs = JobBuilder(question_field=s.question_field, default_domain=s.domain,
                                default_max_gen_toks=s.max_gen_toks, eos=self.backends.eos_string())
        self._warned_stops: set[str] = set()
        if folder is None:
            logger.info("prm_guided: no trace_path given, so no traces, cost file or resume store on disk.")

    @property
    def settings(self) -> Any:
        return self.session.settings

    @property
    def backends(self) -> Backends:
        return self.session.backends

    @property
    def strategy(self) -> Any:
        return self.session.strategy

    @property
    def budget(self) -> Budget:
        return self.session.budget

    @property
    def config(self) -> dict[str, Any]:
        return self.session.config

    @property
    def config_fingerprint(self) -> str:
        return self.session.fingerprint

    @property
    def costs(self) -> CostSummary:
        return self.session.costs

    # -- lm-eval API -------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        jobs = self._jobs.build(list(requests))
        texts: list[str | None] = [None] * len(jobs)
        records: list[dict[str, Any] | None] = [None] * len(jobs)
        todo = []
        for job in jobs:
            job.key = request_key(self.config_fingerprint, job.context, job.gen_kwargs,
                                  job.problem.question, job.repeat)
            stored = self.store.get(job.key) if self.store is not None and self.settings.resume else None
            if stored is not None:
                records[job.index] = {**stored, "resumed": True}
            else:
                todo.append(job)
        if len(todo) < len(jobs):
            logger.info("prm_guided: resumed %d of %d problems from %s", len(jobs) - len(todo), len(jobs),
                        self.store.path if self.store else "")
        with interruptible() as guard, \
                tqdm(total=len(todo), disable=disable_tqdm, desc=f"prm_guided ({self._strategy_name()})") as bar:
            try:
                for batch in self._batches(todo):
                    for job, record in zip(batch, self._search(batch, guard), strict=True):
                        records[job.index] = record
                    bar.update(len(batch))
            except KeyboardInterrupt:
                finished = [job for job in jobs if records[job.index] is not None]
                with guard.critical():
                    self._report(finished, records)
                logger.warning("prm_guided: interrupted with %d of %d problems done; finished batches are in %s. "
                               "Rerun with resume=true to complete the run.", len(finished), len(jobs),
                               self.store.path if self.store else "no store (set trace_path= to resume)")
                raise
        for job in jobs:
            done = records[job.index]
            assert done is not None
            texts[job.index] = done["text"]
        self._report(jobs, records)
        return [t if t is not None else "" for t in texts]

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.backends.scorer().loglikelihood(requests)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        return self.backends.scorer().loglikelihood_rolling(requests)

    @property
    def tokenizer(self) -> Any:
        return self.backends.tokenizer(required=False)

    @property
    def tokenizer_name(self) -> str:
        return self.backends.tokenizer_name()

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.backends.apply_chat_template(chat_history, add_generation_prompt)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.backends.chat_template(chat_template)

    def set_cache_hook(self, cache_hook: Any) -> None:
        if getattr(cache_hook, "dbdict", None) is not None:
            logger.warning(
                "prm_guided: lm-eval's --use_cache keys answers on the prompt only, so a cache shared "
                "across strategies/PRMs returns stale answers. prm_guided keeps its own store keyed by "
                "the full configuration under trace_path (resume=true); prefer that and drop --use_cache."
            )
        super().set_cache_hook(cache_hook)

    def get_model_info(self) -> dict[str, Any]:
        """Run-level settings and the cost summary, merged into lm-eval's results JSON."""
        return {"prm_guided": {**self.config, "config_fingerprint": self.config_fingerprint,
                               "cost_summary": self.costs.summary()}}

    # -- search ------------------------------------------------------------------
    def _batches(self, jobs: list[Job]) -> list[list[Job]]:
        groups: dict[tuple[Any, ...], list[Job]] = {}
        for job in jobs:  # one strategy instance per (task, sampling, repeat) group
            groups.setdefault((job.task, job.temperature, job.top_p, job.repeat), []).append(job)
        size = self.settings.search_batch_size
        return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]

    def _search(self, batch: list[Job], guard: Interrupts) -> list[dict[str, Any]]:
        job = batch[0]
        self._check_stops(job, self.session.strategy_for(job.repeat, job.temperature, job.top_p))
        start = time.perf_counter()
        results: list[SearchResult] = self.session.search(
            [j.problem for j in batch], sample=job.repeat, temperature=job.temperature, top_p=job.top_p)
        seconds = (time.perf_counter() - start) / len(batch)
        from lm_eval.models.utils import postprocess_generated_text

        records = []
        for job, result in zip(batch, results, strict=True):
            text = postprocess_generated_text(result.text, job.problem.stop, None)
            records.append({"text": text, "seconds": seconds, "result": result.to_json(), "uid": job.problem.uid,
                            "question": job.problem.question, "domain": job.problem.domain})
        if self.store is not None:  # failed problems stay out: a rerun retries them
            with guard.critical():
                self.store.put_many([(j.key, r) for j, r, res in zip(batch, records, results, strict=True)
                                     if res.error is None])
        return [{**r, "resumed": False} for r in records]

    def _check_stops(self, job: Job, strategy: Any) -> None:
        """Warn once per task when a final stop string cuts every answer at its first step."""
        from prm_plugin.steps import default_delimiter

        delimiter = getattr(strategy.params, "step_delimiter", None) or default_delimiter(job.problem.domain)
        clash = [s for s in job.problem.stop if s and s in delimiter]
        if clash and job.task not in self._warned_stops:
            self._warned_stops.add(job.task)
            logger.warning(
                "%s: the task stops generation at %r, which also ends every step (step delimiter %r), so each "
                "answer is a single step. Use --gen_kwargs to change `until`, or set step_delimiter=.",
                job.task, clash[0], delimiter,
            )

    def _report(self, jobs: list[Job], records: Sequence[dict[str, Any] | None]) -> None:
        lines: dict[str, list[dict[str, Any]]] = {}
        for job in jobs:
            record = records[job.index]
            assert record is not None
            self.costs.add(job.task, record["result"].get("cost", {}), record["seconds"], record["resumed"],
                           failed="error" in record["result"])
            lines.setdefault(job.task, []).append({
                "task": job.task, "doc_id": job.doc_id, "prompt_hash": job.prompt_hash, "repeat": job.repeat,
                "resumed": record["resumed"], "question": record["question"], "domain": record["domain"],
                **record["result"],
            })
        if self.traces is not None:
            for task, task_lines in lines.items():
                self.traces.write(task, task_lines)
            self.costs.write(self.traces.folder / "cost_summary.json")
        if jobs:
            print(f"\nprm_guided cost summary ({self._strategy_name()}, n={self.budget.n}):\n{self.costs.table()}\n")
        if self.session.failures:
            logger.error(FAILURES.summary(self.session.failures))

    def _strategy_name(self) -> str:
        return self.session.strategy_name
