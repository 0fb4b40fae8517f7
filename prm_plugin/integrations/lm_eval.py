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

Data parallel (``accelerate launch -m lm_eval --model prm_guided ...``): each rank loads
its own policy and PRM on its own device (``prm_plugin.integrations.ranks``), searches the
share of docs lm-eval gives it, and lm-eval gathers the samples and metrics on rank 0, as
for ``hf``. A problem's seeds depend on the problem (its prompt text and repeat index),
never on its rank or batch, so the answers are those of a single-process run. Each rank
writes ``<task>.rank<r>.traces.jsonl`` and its own store file, and reads every rank's
store file, so a run resumes under any number of ranks; when all ranks are done, rank 0
writes the merged ``<task>.traces.jsonl`` and ``cost_summary.json``.
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
from prm_plugin.integrations.ranks import Ranks
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
        # before the models load: each data-parallel rank places them on its own device
        self.ranks = Ranks.detect(model_args.get("device"))
        self._rank, self._world_size = self.ranks.rank, self.ranks.world_size
        if self.ranks.distributed:
            self.accelerator = self.ranks.accelerator
            self._device = self.ranks.device
        named = {k: v for k, v in (("policy", policy), ("prm", prm), ("strategy", strategy)) if isinstance(v, str)}
        if self.ranks.distributed and "vllm" in (named.get("policy"), model_args.get("prm_backend")):
            raise ValueError(
                "prm_guided: policy=vllm / prm_backend=vllm cannot run under a data-parallel launch: every "
                "rank's in-process vLLM engine would take the same GPUs. Serve the models instead (`vllm "
                "serve`) and point the ranks at them (policy=openai,base_url=...,prm=http://...), or run "
                "one process."
            )
        self.session = SearchSession.build(
            {**named, **model_args}, harness="lm-eval",
            policy=None if isinstance(policy, str) else policy,
            prm=None if prm is None or isinstance(prm, str) else prm,
            strategy=None if isinstance(strategy, str) else strategy,
            placement=self.ranks.placement if self.ranks.distributed else None,
        )
        s = self.settings
        folder = Path(s.trace_path) if s.trace_path else None
        shard = self.ranks.shard
        self.traces = TraceWriter(folder, shard=shard) if folder else None
        self.store = ResultStore(folder / "store", self.config_fingerprint, self.config, shard=shard) \
            if folder else None
        self._all_costs = self.session.costs  # every rank's costs (rank 0, once the ranks are merged)
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

    # -- data parallel: what lm-eval's evaluator calls (see ``Ranks``) -------------
    def all_gather(self, tensor: Any) -> Any:
        return self.ranks.all_gather(tensor)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        return self.ranks.gather_object(obj, dst)

    def barrier(self) -> None:
        self.ranks.barrier()

    # -- lm-eval API -------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        built = self._jobs.build(list(requests), padded=self.ranks.distributed)
        jobs = [job for job in built if job.padding_of is None]  # lm-eval's padding is not searched
        texts: list[str | None] = [None] * len(built)
        records: list[dict[str, Any] | None] = [None] * len(built)
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
        for job in built:
            done = records[job.index if job.padding_of is None else job.padding_of]
            assert done is not None
            texts[job.index] = done["text"]
        self._report(jobs, records, merge=True)
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
                               "world_size": self.world_size, "cost_summary": self._all_costs.summary()}}

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

    def _report(self, jobs: list[Job], records: Sequence[dict[str, Any] | None], merge: bool = False) -> None:
        """Costs, traces and the cost table of ``jobs``; ``merge``: the end of a complete
        ``generate_until``, where every rank gets here and rank 0 merges the ranks' reports."""
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
            shard = f".{self.ranks.shard}" if self.ranks.shard else ""
            self.costs.write(self.traces.folder / f"cost_summary{shard}.json")
        if merge and self.ranks.distributed:
            self._merge_ranks(lines)
        elif jobs:
            where = f" rank {self.rank} of {self.world_size}" if self.ranks.distributed else ""
            print(f"\nprm_guided cost summary ({self._strategy_name()}, n={self.budget.n}{where}):\n"
                  f"{self.costs.table()}\n")
        if self.session.failures:
            logger.error(FAILURES.summary(self.session.failures))

    def _merge_ranks(self, lines: dict[str, list[dict[str, Any]]]) -> None:
        """Rank 0 gathers every rank's costs and trace lines, writes the merged
        ``cost_summary.json`` and ``<task>.traces.jsonl`` and prints the merged table."""
        parts = self.ranks.gather_object({"costs": self.costs.state(),
                                          "lines": lines if self.traces is not None else {}})
        if parts is None:  # not rank 0
            return
        merged = CostSummary()
        by_task: dict[str, list[dict[str, Any]]] = {}
        for part in parts:
            merged.absorb(part["costs"])
            for task, task_lines in part["lines"].items():
                by_task.setdefault(task, []).extend(task_lines)
        self._all_costs = merged
        if self.traces is not None:
            for task, task_lines in by_task.items():
                self.traces.write_merged(task, task_lines, self.world_size)
            merged.write(self.traces.folder / "cost_summary.json")
        if merged.summary():
            print(f"\nprm_guided cost summary ({self._strategy_name()}, n={self.budget.n}, "
                  f"{self.world_size} ranks):\n{merged.table()}\n")

    def _strategy_name(self) -> str:
        return self.session.strategy_name
