"""Reading raw records from a local JSON/JSONL file or a Hub dataset, and cleaning steps."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def read_records(
    source: str,
    *,
    split: str = "train",
    name: str | None = None,
    data_files: Any = None,
) -> Iterator[Mapping[str, Any]]:
    """Yield records from ``source``: a local ``.jsonl`` / ``.json`` file (read directly,
    line by line), or anything ``datasets.load_dataset`` accepts (a Hub id, a local
    dataset directory; ``name``, ``split`` and ``data_files`` pass through)."""
    path = Path(source)
    if path.is_file():
        yield from _read_json_file(path)
        return
    import datasets

    yield from datasets.load_dataset(source, name=name, split=split, data_files=data_files)


def _read_json_file(path: Path) -> Iterator[Mapping[str, Any]]:
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: a .json file must hold a list of records; use JSONL for one per line.")
        yield from data
        return
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from exc


def clean_step(text: str, separator: str) -> str:
    r"""``text`` stripped, with any occurrence of the step separator inside it replaced
    (by ``"\n"`` for a newline separator such as ``"\n\n"``, else a space), so a step
    never contains the separator that ends it.

    >>> clean_step("x = 1\n\n# Answer\n\n\n1 ", "\n\n")
    'x = 1\n# Answer\n1'
    >>> clean_step("Step 1: x ки", " ки")
    'Step 1: x'
    """
    repl = "\n" if "\n" in separator and separator != "\n" else " "
    if separator in repl or repl == separator:
        repl = ""
    text = text.strip()
    while separator in text:
        text = text.replace(separator, repl)
    return text.strip()


def stepwise_features() -> Any:
    """The column types every loader produces (so sources concatenate into a mixture)."""
    import datasets

    seq = getattr(datasets, "List", None) or datasets.Sequence
    return datasets.Features({
        "prompt": datasets.Value("string"),
        "completions": seq(datasets.Value("string")),
        "labels": seq(datasets.Value("float32")),
        "source": datasets.Value("string"),
    })


def to_stepwise_dataset(rows: list[dict[str, Any]], what: str) -> Any:
    """A ``datasets.Dataset`` with ``stepwise_features()``; an error when ``rows`` is empty."""
    import datasets

    if not rows:
        raise ValueError(f"{what}: no usable rows (see the counts logged above); check the path and format.")
    return datasets.Dataset.from_list(rows, features=stepwise_features())
