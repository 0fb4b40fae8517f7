"""``prm-plugin lcb``: LiveCodeBench code generation with reward-guided search, end to end.

::

    prm-plugin lcb --release release_v5 --start-date 2024-08-01 --end-date 2025-02-01 \\
        --policy Qwen/Qwen2.5-Coder-7B-Instruct --prm my/code-prm --strategy beam --n 16 \\
        --model-args beam_width=4 --output out/lcb

loads the problems (``prm_plugin.integrations.livecodebench``), runs one search per
problem and final sample, and writes to ``--output``:

* ``custom_outputs.json``: LiveCodeBench's ``custom_evaluator`` input
  (``[{"question_id", "code_list"}]``), so its own evaluator can re-score the run;
* ``eval.json``: pass@1 (and pass@k when ``--num-samples`` allows), per problem and by
  difficulty, with the run's configuration and cost summary;
* ``eval_all.json``: per problem, its fields, ``output_list``, ``code_list``, ``graded_list``;
* ``traces.jsonl``: each search (candidates, step scores, cost); ``store/``: finished
  searches, so a killed run resumes (``--no-resume`` recomputes).

``--custom-output FILE`` skips generation and grades LiveCodeBench-format outputs.

A search or a grading that fails on one problem (``prm_plugin.integrations.faults``)
gives that sample an empty output / a failing verdict, is recorded in ``traces.jsonl``
(``error``) and the cost summary, and the command exits with status 3 at the end
(``--strict``: stop at the first failure). Ctrl-C / SIGTERM: finished batches are in
``store/`` and ``traces.jsonl`` holds the finished samples; rerun to complete.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prm_plugin.integrations import livecodebench as lcb
from prm_plugin.integrations._cli_common import FLAG_KEYS, add_search_flags, search_args
from prm_plugin.integrations.faults import FAILURES, describe, interruptible
from prm_plugin.integrations.result_store import ResultStore, request_key
from prm_plugin.integrations.search_session import SearchSession
from prm_plugin.integrations.traces import CostSummary
from prm_plugin.search import Problem

TASK = "livecodebench"
DEFAULT_MAX_TOKENS = 2000  # LiveCodeBench's runner default (--max_tokens)
#: ModelSettings keys that flags of this command replace (or that mean nothing here).
UNUSED_KEYS = ("question_field", "domain", "search_batch_size", "trace_path", "resume", "max_gen_toks")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prm-plugin lcb",
        description="LiveCodeBench code generation with reward-guided search: problems from the pinned Hub "
                    "release, outputs in LiveCodeBench's custom_evaluator format, pass@1 from the sandbox.")
    d = p.add_argument_group("problems")
    d.add_argument("--release", default=lcb.DEFAULT_RELEASE,
                   help=f"release_v1..release_v6, v1..v6 or release_latest (default {lcb.DEFAULT_RELEASE})")
    d.add_argument("--start-date", help="keep problems with contest_date >= this (YYYY-MM-DD)")
    d.add_argument("--end-date", help="keep problems with contest_date <= this (YYYY-MM-DD)")
    d.add_argument("--revision", help="pin the Hub dataset revision (commit)")
    d.add_argument("--cache-dir", help="huggingface_hub cache folder (default: its own)")
    d.add_argument("--data-files", nargs="+", metavar="JSONL", help="local files in the upstream row format")
    d.add_argument("--trust-pickle", action="store_true",
                   help="decode pickled private tests in --data-files (never needed for the Hub copy)")
    add_search_flags(p, trace_path=False)
    g = p.add_argument_group("generation and grading")
    g.add_argument("--output", required=True, metavar="DIR", help="folder for outputs, scores and traces")
    g.add_argument("--num-samples", type=int, default=1, help="final solutions per problem (default 1)")
    g.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="token cap per solution")
    g.add_argument("--batch-size", type=int, default=8, help="problems per search call (default 8)")
    g.add_argument("--no-chat-template", action="store_true",
                   help="plain-text prompt even when the policy's tokenizer has a chat template")
    g.add_argument("--no-resume", action="store_true", help="recompute searches already in DIR/store")
    g.add_argument("--workers", type=int, default=None, help="programs graded at once (default: CPU count)")
    g.add_argument("--custom-output", metavar="JSON", help="grade these outputs instead of generating")
    return p


def main(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(list(argv))
    start = len(FAILURES.failures)
    if ns.num_samples < 1 or ns.max_tokens < 1 or ns.batch_size < 1:
        raise SystemExit("prm-plugin lcb: --num-samples, --max-tokens and --batch-size must be >= 1.")
    source = lcb.Source(release=ns.release, start_date=ns.start_date, end_date=ns.end_date,
                        data_files=ns.data_files, revision=ns.revision, cache_dir=ns.cache_dir,
                        trust_pickle=ns.trust_pickle)
    try:
        problems = lcb.load_problems(source)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"prm-plugin lcb: {exc}") from None
    if not problems:
        raise SystemExit(f"prm-plugin lcb: no problems in {ns.release} between {ns.start_date} and {ns.end_date}.")
    out = Path(ns.output)
    out.mkdir(parents=True, exist_ok=True)
    run_info: dict[str, Any] = {"release": ns.release, "start_date": ns.start_date, "end_date": ns.end_date,
                                "data_files": ns.data_files, "revision": ns.revision}
    if ns.custom_output:
        given = [f"--{d.replace('_', '-')}" for d in FLAG_KEYS if getattr(ns, d, None) is not None]
        if given or ns.model_args:
            raise SystemExit(f"prm-plugin lcb: --custom-output grades existing outputs, so the search flags "
                             f"{', '.join(given + ['--model-args'] * bool(ns.model_args))} do nothing; drop them.")
        codes = _custom_codes(problems, ns.custom_output)
        outputs = codes
        run_info["custom_output"] = ns.custom_output
    else:
        try:
            session = SearchSession.build(search_args(ns), harness="LiveCodeBench",
                                          unused=UNUSED_KEYS)
        except ValueError as exc:
            raise SystemExit(f"prm-plugin lcb: {exc}") from None
        try:
            outputs, codes = generate(problems, session, out, num_samples=ns.num_samples,
                                      max_tokens=ns.max_tokens, batch_size=ns.batch_size,
                                      use_chat=not ns.no_chat_template, resume=not ns.no_resume)
        except KeyboardInterrupt:
            return 130  # generate said what was kept and how to go on
        run_info.update(config=session.config, config_fingerprint=session.fingerprint,
                        cost_summary=session.costs.summary())
    graded = grade(problems, codes, workers=ns.workers, strict=bool(getattr(ns, "strict", False)))
    report = write_results(out, problems, outputs, codes, graded, run_info)
    print(f"LiveCodeBench {ns.release} ({len(problems)} problems, {ns.num_samples} sample(s) each): "
          f"pass@1 = {report['pass@1']:.4f}")
    for level, value in report["pass@1_by_difficulty"].items():
        print(f"  {level}: {value:.4f}")
    print(f"Results: {out / 'eval.json'}; LiveCodeBench custom_evaluator input: {out / 'custom_outputs.json'}")
    return FAILURES.exit_status(start)


def grade(problems: list[dict[str, Any]], codes: list[list[str]], *, workers: int | None,
          strict: bool) -> list[list[bool]]:
    """``lcb.grade``, isolating a grading crash to its problem: its samples fail and the
    crash is recorded (``strict``: it stops the run)."""
    try:
        return lcb.grade(problems, codes, workers=workers)
    except Exception:
        if strict:
            raise
    graded = []
    for problem, code_list in zip(problems, codes, strict=True):
        try:
            graded.append(lcb.grade([problem], [code_list], workers=workers)[0])
        except Exception as exc:
            FAILURES.record(str(problem["question_id"]), describe(exc, "grading"), "LiveCodeBench")
            graded.append([False] * len(code_list))
    return graded


def _custom_codes(problems: list[dict[str, Any]], path: str) -> list[list[str]]:
    given = lcb.read_custom_outputs(path)
    ids = [str(p["question_id"]) for p in problems]
    missing, extra = sorted(set(ids) - set(given)), sorted(set(given) - set(ids))
    if missing or extra:
        raise SystemExit(f"prm-plugin lcb: {path} does not match the selected problems: missing {missing or 'none'}, "
                         f"not selected {extra or 'none'}. Check --release and the date window.")
    return [given[i] for i in ids]


def generate(problems: list[dict[str, Any]], session: SearchSession, out: Path, *, num_samples: int,
             max_tokens: int, batch_size: int, use_chat: bool, resume: bool) -> tuple[list[list[str]], list[list[str]]]:
    """Search every (problem, sample); returns raw outputs and extracted code per problem."""
    tokenizer = session.tokenizer()
    prompts = [lcb.policy_prompt(p, tokenizer, use_chat) for p in problems]
    store = ResultStore(out / "store", session.fingerprint, session.config)
    records: list[list[dict[str, Any]]] = [[{} for _ in range(num_samples)] for _ in problems]
    with interruptible() as guard:
        try:
            _search_all(problems, session, store, records, prompts, num_samples=num_samples, max_tokens=max_tokens,
                        batch_size=batch_size, resume=resume, guard=guard)
        except KeyboardInterrupt:
            with guard.critical():
                _write_traces(out / "traces.jsonl", problems, records, session.costs)
            print(f"prm-plugin lcb: interrupted; finished batches are in {store.path} and {out / 'traces.jsonl'} "
                  "holds the finished samples. Rerun the same command to complete the run.")
            raise
    _write_traces(out / "traces.jsonl", problems, records, session.costs)
    return ([[r["output"] for r in recs] for recs in records], [[r["code"] for r in recs] for recs in records])


def _search_all(problems: list[dict[str, Any]], session: SearchSession, store: ResultStore,
                records: list[list[dict[str, Any]]], prompts: list[str], *, num_samples: int, max_tokens: int,
                batch_size: int, resume: bool, guard: Any) -> None:
    for sample in range(num_samples):
        todo = []
        for i, problem in enumerate(problems):
            key = request_key(session.fingerprint, prompts[i], {"max_tokens": max_tokens}, problem["question_content"],
                              sample)
            stored = store.get(key) if resume else None
            if stored is not None:
                records[i][sample] = {**stored, "resumed": True}
            else:
                todo.append((i, key))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            batch = [Problem(prompt=prompts[i], question=problems[i]["question_content"], stop=[],
                             max_tokens=max_tokens, domain="code", doc=problems[i],
                             uid=f"{problems[i]['question_id']}/{sample}") for i, _ in chunk]
            began = time.perf_counter()
            results = session.search(batch, sample=sample)
            seconds = (time.perf_counter() - began) / len(chunk)
            new = [(key, {"output": r.text, "code": lcb.extract_code(r.text), "seconds": seconds,
                          "result": r.to_json()}) for (_, key), r in zip(chunk, results, strict=True)]
            with guard.critical():  # failed searches stay out of the store: a rerun retries them
                store.put_many([item for item, r in zip(new, results, strict=True) if r.error is None])
            for (i, _), (_, record) in zip(chunk, new, strict=True):
                records[i][sample] = {**record, "resumed": False}


def _write_traces(path: Path, problems: list[dict[str, Any]], records: list[list[dict[str, Any]]],
                  costs: CostSummary) -> None:
    with path.open("w", encoding="utf-8") as f:
        for problem, recs in zip(problems, records, strict=True):
            for sample, rec in enumerate(recs):
                if not rec:  # not searched (an interrupted run)
                    continue
                costs.add(TASK, rec["result"].get("cost", {}), rec["seconds"], rec["resumed"],
                          failed="error" in rec["result"])
                line = {"question_id": problem["question_id"], "sample": sample, "resumed": rec["resumed"],
                        "question": problem["question_content"], "code": rec["code"], **rec["result"]}
                f.write(json.dumps(line, ensure_ascii=False, default=repr) + "\n")


def write_results(out: Path, problems: list[dict[str, Any]], outputs: list[list[str]], codes: list[list[str]],
                  graded: list[list[bool]], run_info: dict[str, Any]) -> dict[str, Any]:
    """Write custom_outputs.json, eval_all.json and eval.json; return eval.json's content."""
    ids = [str(p["question_id"]) for p in problems]
    _dump(out / "custom_outputs.json", lcb.custom_outputs(ids, codes))
    fields = ("question_id", "question_title", "platform", "contest_id", "contest_date", "difficulty", "starter_code")
    per_problem = [{**{k: p.get(k) for k in fields}, "output_list": o, "code_list": c, "graded_list": g,
                    "pass@1": sum(g) / len(g)} for p, o, c, g in zip(problems, outputs, codes, graded, strict=True)]
    _dump(out / "eval_all.json", per_problem)
    report = {**lcb.metrics(problems, graded), "n_problems": len(problems),
              "num_samples": min(len(g) for g in graded),
              "grader": "prm_plugin.sandbox with LiveCodeBench's rules (prm_plugin.grading.livecodebench.grade_lcb)", **run_info}
    _dump(out / "eval.json", report)
    return report


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=repr) + "\n", encoding="utf-8")
