"""The world build's figures as a Markdown block, and the README section they fill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

START, END = "<!-- world-figures:start -->", "<!-- world-figures:end -->"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def format_report(report: dict[str, Any]) -> str:
    """Markdown tables of a build report (``figures.json``)."""
    f, lab, t = report["figures"], report["labels"], report["timings"]
    n = report["config"]["eval_n"]
    prm = f["prm_on_test_samples"]
    lines = [
        f"Arithmetic test set ({f['arith_problems']} problems), n = {n} samples at temperature {f.get('temperature', 1.0)}:",
        "",
        "| method | accuracy |",
        "|---|---|",
        f"| greedy | {_pct(f['greedy'])} |",
        f"| majority@{n} | {_pct(f[f'majority@{n}'])} |",
        f"| PRM-weighted majority@{n} | {_pct(f[f'weighted_majority@{n}'])} |",
        f"| PRM best-of-{n} (min) | {_pct(f[f'bon@{n}'])} |",
        f"| pass@{n} (oracle) | {_pct(f[f'pass@{n}'])} |",
        "",
        f"PRM on the test set's sampled solutions, against the true step labels: step F1 "
        f"(correct steps) {prm['step_f1']:.3f}, error-step F1 {prm['error_step_f1']:.3f}, "
        f"step accuracy {prm['step_accuracy']:.3f}, first-error F1 {prm['first_error_f1']:.3f}.",
        "",
    ]
    if "codelike_problems" in f:
        lines += [
            f"Code-like test set ({f['codelike_problems']} problems): greedy {_pct(f['codelike_greedy'])}, "
            f"pass@{n} {_pct(f[f'codelike_pass@{n}'])}.",
            "",
        ]
    cons = lab["consensus"]
    lines += [
        f"Monte-Carlo labels of {lab['solutions']} policy solutions against the truth "
        f"(two annotators {', '.join(cons['annotators'])}; kept {cons['kept']} of {cons['total']}):",
        "",
        "| labels | solutions | step accuracy | first-error accuracy | wrong steps called correct | correct steps called wrong |",
        "|---|---|---|---|---|---|",
    ]
    for name, key in (("one annotator, unfiltered", "unfiltered"), ("consensus-filtered", "filtered")):
        q = lab[key]
        lines.append(
            f"| {name} | {q['solutions']} | {q['step_accuracy']:.3f} | {q['first_error_accuracy']:.3f} "
            f"| {q['false_correct']} | {q['false_wrong']} |"
        )
    policy = (f"policy reused (--resume; its SFT took {t['policy_sft_s']:.0f} s)" if t.get("policy_reused")
              else f"policy {t['policy_s']:.0f} s")
    lines += ["", f"Build time: {t['total_s'] / 60:.1f} min ({policy}, labels "
              f"{t['labels_s']:.0f} s, PRM {t['prm_s']:.0f} s, evaluation {t['eval_s']:.0f} s)."]
    return "\n".join(lines)


def update_readme(readme: Path, text: str) -> None:
    """Replace the text between the world-figures markers of ``readme``."""
    content = readme.read_text()
    if START not in content or END not in content:
        raise ValueError(f"{readme} has no {START} ... {END} block to fill; add one to its world section.")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
