"""``evalplus.evaluate ... --backend prm_guided``: reward-guided search as an EvalPlus decoder.

::

    evalplus.evaluate --dataset humaneval --backend prm_guided --greedy \\
        --model "pretrained=Qwen/Qwen2.5-Coder-7B-Instruct,prm=my/code-prm,strategy=beam,n=16,beam_width=4"

``--model`` carries the plugin's settings in lm-eval's ``model_args`` syntax (the keys of
``lm_eval --model prm_guided``; a bare model id means ``pretrained=<id>``), so EvalPlus's
fixed flags stay as they are and the settings are part of EvalPlus's output file name.
EvalPlus caps that name at 255 bytes: with long local paths, use relative ones, or put
the settings in a YAML/JSON file and pass its path (``--model runs/beam16.yaml``). Either
way the configuration's fingerprint is stored next to the samples, and resuming a
samples file written under another configuration is refused. EvalPlus's flags keep their
meaning: ``--greedy`` / ``--n_samples`` set how many final solutions each task gets
(each one a full search with its own seed), ``--temperature`` is the search's sampling
temperature unless ``temperature=`` is in ``--model`` (EvalPlus's 0 keeps the strategy's
default, since a search needs samples), ``--force_base_prompt`` forces direct completion,
``--dtype`` is the policy's and PRM's dtype unless ``--model`` has ``dtype=``, and
``--trust_remote_code``, ``--attn_implementation`` (other than EvalPlus's default ``eager``,
which would slow the HF policy) and ``--tp`` (``policy=vllm``) reach the policy unless
``--model`` sets ``policy.<key>=`` itself.

Prompting follows EvalPlus's HF/vLLM decoders: a policy whose tokenizer has a chat template
gets EvalPlus's instruction prompt with the answer pre-filled up to an opening
```` ```python ```` fence (``make_raw_chat_prompt``), otherwise the task prompt is continued
directly; EvalPlus's stop strings end a solution. With an EvalPlus decoder as the policy
(``policy=evalplus:<backend>``, whole solutions only: ``bon``, ``majority``, ``greedy``),
the task prompt goes to it as EvalPlus would send it, and a decoder that formats its own
chat prompt (API backends; ``hf``/``vllm`` chat models) gets EvalPlus's chat stop strings;
``--base-url``, ``--force_base_prompt``, ``--trust_remote_code``, ``--attn_implementation``
and ``--tp`` reach that decoder. The PRM sees the task prompt as the question and the
answer split into code-aware steps (``prm_plugin.steps``, domain ``code``). Search traces and the cost summary go next to EvalPlus's samples file
(``<samples>.prm_traces.jsonl``, ``<samples>.prm_run.json``) or under ``trace_path=``.

A task whose search fails (``prm_plugin.integrations.faults``) gets an empty solution
(EvalPlus grades it as failing), its trace line carries the ``error``, and the process
exits with status 3 after EvalPlus has written its results (``strict=true``: the first
failure stops the run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from evalplus.provider.base import DecoderBase
from evalplus.provider.utility import EOS, extra_eos_for_direct_completion, make_raw_chat_prompt

from prm_plugin.integrations.faults import FAILURES
from prm_plugin.integrations.search_session import SearchSession, parse_model_args
from prm_plugin.search import Problem, SearchResult

logger = logging.getLogger(__name__)

#: ModelSettings keys with no meaning under EvalPlus (it resumes by itself, sends one
#: task at a time, and every task is code whose question is its prompt).
UNUSED_KEYS = ("question_field", "domain", "resume", "search_batch_size")
#: EvalPlus's own default cap on generated tokens (``DecoderBase.max_new_tokens``).
DEFAULT_MAX_TOKENS = 768
#: EvalPlus's make_model defaults: only values that differ from these are passed on.
_EVALPLUS_DEFAULTS = {"dtype": "bfloat16", "trust_remote_code": False, "attn_implementation": "eager", "tp": 1}


class PRMGuidedDecoder(DecoderBase):
    """An EvalPlus decoder whose every solution is the result of a PRM-guided search.

    Args:
        model: the plugin settings (see the module docstring), or a bare policy model id.
        dataset: ``humaneval``, ``mbpp`` or ``evalperf`` (picks EvalPlus's stop strings).
        batch_size: final solutions returned per ``codegen`` call (EvalPlus's ``--bs``).
        temperature: EvalPlus's ``--temperature``.
        force_base_prompt: always continue the task prompt (no chat template).
        instruction_prefix / response_prefix: EvalPlus's chat prompt texts.
        policy / prm / strategy: objects used instead of the named ones (Python use).
        Other arguments are ``make_model``'s and reach the policy as described above.
    """

    is_prm_guided = True

    def __init__(self, model: str, dataset: str, backend: str = "prm_guided", batch_size: int = 1,
                 temperature: float = 0.0, force_base_prompt: bool = False,
                 instruction_prefix: str | None = None, response_prefix: str | None = None,
                 dtype: str = "bfloat16", trust_remote_code: bool = False, tp: int = 1,
                 base_url: str | None = None, attn_implementation: str = "eager", *,
                 policy: Any = None, prm: Any = None, strategy: Any = None, **extra: Any) -> None:
        if extra:
            logger.warning("prm_guided: EvalPlus passed arguments this backend does not know: %s", sorted(extra))
        if isinstance(model, str):
            _check_file_name(model, backend, temperature)
        args = load_settings(model) if isinstance(model, str) else dict(model)
        max_tokens = int(args.get("max_gen_toks", DEFAULT_MAX_TOKENS))
        super().__init__(name=str(model), batch_size=batch_size, temperature=temperature,
                         max_new_tokens=max_tokens, dtype=dtype, trust_remote_code=trust_remote_code,
                         instruction_prefix=instruction_prefix, response_prefix=response_prefix)
        _apply_evalplus_flags(args, dtype=dtype, trust_remote_code=trust_remote_code,
                              attn_implementation=attn_implementation, tp=tp, base_url=base_url,
                              force_base_prompt=force_base_prompt)
        self.session = SearchSession.build(args, harness="EvalPlus", unused=UNUSED_KEYS,
                                           policy=policy, prm=prm, strategy=strategy)
        self.dataset = dataset
        self.force_base_prompt = force_base_prompt
        self.tokenizer = self.session.tokenizer()
        self.skip_special_tokens = True
        self.eos = list(EOS) + (extra_eos_for_direct_completion(dataset) if self.is_direct_completion()
                                else ["\n```\n"])
        self._run: _Run | None = None
        self._served: Counter[str] = Counter()

    # -- EvalPlus API ------------------------------------------------------------------
    def is_direct_completion(self) -> bool:
        if self._policy_formats_prompt:  # an EvalPlus chat decoder underneath: its stop strings
            return False
        return self.force_base_prompt or getattr(self.tokenizer, "chat_template", None) is None

    @property
    def _policy_formats_prompt(self) -> bool:
        return bool(getattr(self.session.backends.policy, "formats_prompt", False))

    def codegen(self, prompt: str, do_sample: bool = True, num_samples: int = 200) -> list[str]:
        """``min(batch_size, num_samples)`` final solutions for one task, one search each."""
        count = max(1, min(self.batch_size, num_samples))
        first = self._first_sample(prompt, num_samples)
        task = self._run.task(prompt) if self._run else {}
        outputs = []
        for sample in range(first, first + count):
            problem = self.problem(prompt, task, sample)
            start = time.perf_counter()
            (result,) = self.session.search([problem], sample=sample, temperature=self.temperature)
            seconds = time.perf_counter() - start
            text = self.postprocess(result.text)
            outputs.append(text)
            self._record(problem, task, sample, text, result, seconds)
        self._served[prompt] += count
        return outputs

    # -- pieces ----------------------------------------------------------------------
    def policy_prompt(self, prompt: str) -> str:
        """The exact text the policy continues: EvalPlus's chat prompt or the task prompt
        (also for an EvalPlus decoder as the policy, which applies its own chat prompt)."""
        if self._policy_formats_prompt or self.is_direct_completion():
            return prompt
        return str(make_raw_chat_prompt(prompt, self.instruction_prefix, self.response_prefix, self.tokenizer))

    def problem(self, prompt: str, task: dict[str, Any], sample: int) -> Problem:
        task_id = task.get("task_id") or "task-" + hashlib.sha256(prompt.encode()).hexdigest()[:12]
        return Problem(
            prompt=self.policy_prompt(prompt), question=prompt.strip(), stop=list(self.eos),
            max_tokens=self.max_new_tokens, domain="code", uid=f"{task_id}/{sample}",
            doc={"task_id": task_id, "entry_point": task.get("entry_point"), "prompt": prompt},
        )

    def postprocess(self, text: str) -> str:
        """Cut at the first EvalPlus stop string and expand tabs, as its HF decoder does."""
        cut = min((text.index(s) for s in self.eos if s in text), default=len(text))
        return text[:cut].replace("\t", "    ")

    def begin_run(self, *, target_path: str, n_samples: int, dataset: str, version: str = "default") -> None:
        """Called by the patched ``evalplus.codegen.codegen`` before generating."""
        folder = self.session.settings.trace_path
        self._run = _Run(target_path, n_samples, dataset, version, Path(folder) if folder else None)
        self._run.check_resume(target_path, self.session.fingerprint)
        self._run.write_config(self.session)

    def end_run(self) -> None:
        if self._run is not None:
            self._run.write_config(self.session)
            if self.session.costs.summary():
                print(f"\nprm_guided cost summary ({self.session.strategy_name}, n={self.session.budget.n}):\n"
                      f"{self.session.costs.table()}\n")
        if self.session.failures:
            logger.error(FAILURES.summary(self.session.failures))

    def _first_sample(self, prompt: str, num_samples: int) -> int:
        # codegen asks for n_samples - (solutions already on disk), so the index is exact
        # even when EvalPlus resumes; outside codegen, count what this decoder served.
        if self._run is not None and self._run.n_samples >= num_samples:
            return self._run.n_samples - num_samples
        return self._served[prompt]

    def _record(self, problem: Problem, task: dict[str, Any], sample: int, text: str,
                result: SearchResult, seconds: float) -> None:
        self.session.costs.add(self.dataset, result.cost.to_json(), seconds, False, failed=result.error is not None)
        if self._run is not None:
            self._run.append_trace({"task_id": problem.doc and problem.doc["task_id"], "sample": sample,
                                    "question": problem.question, "solution": text, "seconds": seconds,
                                    **result.to_json()})


class _Run:
    """One ``codegen`` call's context: its output files and the task lookup."""

    def __init__(self, target_path: str, n_samples: int, dataset: str, version: str,
                 folder: Path | None) -> None:
        self.n_samples = int(n_samples)
        stem = target_path[: -len(".jsonl")] if target_path.endswith(".jsonl") else target_path.rstrip("/")
        base = folder / Path(stem).name if folder else Path(stem)
        base.parent.mkdir(parents=True, exist_ok=True)
        self.traces = Path(f"{base}.prm_traces.jsonl")
        self.summary = Path(f"{base}.prm_run.json")
        self._tasks = _task_lookup(dataset, version)

    def task(self, prompt: str) -> dict[str, Any]:
        return self._tasks.get(prompt.strip(), {})

    def check_resume(self, target_path: str, fingerprint: str) -> None:
        """Refuse to add to samples that another configuration wrote."""
        if not (Path(target_path).exists() and self.summary.is_file()):
            return
        previous = json.loads(self.summary.read_text(encoding="utf-8")).get("config_fingerprint")
        if previous and previous != fingerprint:
            raise ValueError(
                f"{target_path} holds samples of another prm_guided configuration (see {self.summary}); "
                "EvalPlus would resume from them. Use another --root, or move the old files away."
            )

    def append_trace(self, line: dict[str, Any]) -> None:
        with self.traces.open("a", encoding="utf-8") as f:  # EvalPlus resumes by appending too
            f.write(json.dumps(line, ensure_ascii=False, default=repr) + "\n")

    def write_config(self, session: SearchSession) -> None:
        payload = {"config": session.config, "config_fingerprint": session.fingerprint,
                   "cost_summary": session.costs.summary()}
        self.summary.write_text(json.dumps(payload, indent=2, default=repr) + "\n", encoding="utf-8")


def _task_lookup(dataset: str, version: str) -> dict[str, dict[str, Any]]:
    """EvalPlus's tasks by stripped prompt (codegen hands the decoder only the prompt)."""
    from evalplus.data import get_human_eval_plus, get_mbpp_plus

    loaders = {"humaneval": [get_human_eval_plus], "mbpp": [get_mbpp_plus],
               "evalperf": [get_human_eval_plus, get_mbpp_plus]}.get(dataset, [])
    tasks: dict[str, dict[str, Any]] = {}
    for load in loaders:
        for task in load(version=version).values():
            tasks[str(task["prompt"]).strip()] = {"task_id": task["task_id"], "entry_point": task["entry_point"]}
    return tasks


def load_settings(model: str) -> dict[str, Any]:
    """``--model``'s settings: a YAML/JSON file of model_args keys, or a model_args string."""
    path = Path(model)
    if "=" not in model and path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
        if not isinstance(data, dict):
            raise ValueError(f"{model}: expected a mapping of prm_guided settings (key: value), got {type(data).__name__}.")
        return {str(k): v for k, v in data.items()}
    return parse_model_args(model)


def _check_file_name(model: str, backend: str, temperature: float) -> None:
    """EvalPlus names its output files after ``--model``; refuse a name the OS would reject
    before any model is loaded."""
    name = model.strip("./").replace("/", "--") + f"_{backend}_temp_{temperature}_eval_results.json"
    if len(name.encode("utf-8")) > 255:
        raise ValueError(
            f"EvalPlus names its result files after --model, and this --model gives a {len(name.encode())}-byte "
            "file name (the limit is 255). Use relative paths, or write the settings to a YAML file "
            "(key: value per line) and pass its path as --model."
        )


def _apply_evalplus_flags(args: dict[str, Any], *, dtype: str, trust_remote_code: bool,
                          attn_implementation: str, tp: int, base_url: str | None = None,
                          force_base_prompt: bool = False) -> None:
    """EvalPlus's model flags, where ``--model`` does not set them itself."""
    policy = str(args.get("policy", "hf"))
    args.setdefault("dtype", dtype)
    if policy.startswith("evalplus:"):  # EvalPlus's own decoder: its make_model flags
        flags = {"base_url": base_url, "policy.force_base_prompt": force_base_prompt or None,
                 "policy.trust_remote_code": trust_remote_code or None,
                 "policy.attn_implementation": None if attn_implementation == "eager" else attn_implementation,
                 "policy.tp": None if tp == 1 else tp}
        for key, value in flags.items():
            if value is not None:
                args.setdefault(key, value)
        return
    if trust_remote_code and policy in ("hf", "vllm"):
        args.setdefault("policy.trust_remote_code", True)
    if policy == "hf" and attn_implementation != _EVALPLUS_DEFAULTS["attn_implementation"]:
        args.setdefault("policy.attn_implementation", attn_implementation)
    if policy == "vllm" and tp != _EVALPLUS_DEFAULTS["tp"]:
        args.setdefault("policy.tensor_parallel_size", tp)
