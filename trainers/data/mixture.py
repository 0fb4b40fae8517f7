"""Loading sources by format and mixing them with per-source weights (seeded).

A source is ``SourceSpec(format, path, weight, ...)`` with format ``prm800k``,
``math_shepherd`` or ``stepwise`` (already TRL stepwise rows: a local JSON/JSONL file,
a dataset directory or a Hub id such as ``trl-lib/math_shepherd``). In a recipe::

    sources:
      - {format: prm800k, path: prm800k/data/phase2_train.jsonl, weight: 0.5,
         options: {exclude_problems_file: MATH-500/test.jsonl}}
      - {format: math_shepherd, path: peiyi9979/Math-Shepherd, weight: 0.5}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from prm_plugin.trainers.data._io import clean_step, read_records, to_stepwise_dataset
from prm_plugin.trainers.data.math_shepherd import load_math_shepherd
from prm_plugin.trainers.data.prm800k import load_prm800k

logger = logging.getLogger(__name__)

FORMATS = ("prm800k", "math_shepherd", "stepwise")


@dataclass
class SourceSpec:
    """One data source of a mixture.

    Attributes:
        format: ``prm800k``, ``math_shepherd`` or ``stepwise``.
        path: local file/directory, ``"json"`` (with ``data_files``) or a Hub id.
        weight: relative share of the mixture (normalised over sources).
        split / name / data_files: passed to ``datasets.load_dataset`` for non-files.
        options: extra loader arguments (e.g. ``neutral_label``, ``exclude_problems_file``
            for PRM800K; ``tasks`` for Math-Shepherd).
    """

    format: str
    path: str
    weight: float = 1.0
    split: str = "train"
    name: str | None = None
    data_files: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"Unknown source format {self.format!r}; use one of: {', '.join(FORMATS)}.")
        if not self.weight > 0:
            raise ValueError(f"Source {self.path!r}: weight must be > 0, got {self.weight}.")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> SourceSpec:
        """Build from a recipe mapping; unknown keys are an error listing the valid ones."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - valid)
        if unknown:
            raise ValueError(f"Unknown source key(s) {unknown}; valid keys: {', '.join(sorted(valid))}. "
                             "Loader-specific arguments go under 'options'.")
        if "format" not in spec or "path" not in spec:
            raise ValueError(f"A source needs 'format' and 'path'; got {dict(spec)}.")
        return cls(**spec)


def load_source(spec: SourceSpec, *, step_separator: str = "\n\n") -> Any:
    """The stepwise ``datasets.Dataset`` of one source."""
    common = {"split": spec.split, "data_files": spec.data_files, "step_separator": step_separator}
    if spec.format == "prm800k":
        return load_prm800k(spec.path, **common, **spec.options)
    if spec.format == "math_shepherd":
        return load_math_shepherd(spec.path, **common, **spec.options)
    return load_stepwise(spec.path, name=spec.name, **common, **spec.options)


def load_stepwise(
    source: str,
    *,
    split: str = "train",
    name: str | None = None,
    data_files: Any = None,
    step_separator: str = "\n\n",
    clean_steps: bool = True,
) -> Any:
    """Rows already in TRL's stepwise format; labels become floats, and (by default) a
    separator inside a step is replaced as the other loaders do (count logged)."""
    rows, cleaned = [], 0
    for record in read_records(source, split=split, name=name, data_files=data_files):
        steps = list(record["completions"])
        if clean_steps:
            new = [clean_step(s, step_separator) for s in steps]
            cleaned += sum(a != b.strip() for a, b in zip(new, steps, strict=True))
            steps = new
        rows.append({"prompt": record["prompt"], "completions": steps,
                     "labels": [float(x) for x in record["labels"]],
                     "source": record.get("source") or source})
    logger.info("Stepwise %s: %d rows, %d steps cleaned", source, len(rows), cleaned)
    return to_stepwise_dataset(rows, f"stepwise {source}")


def mix(
    datasets_: Sequence[Any],
    weights: Sequence[float],
    *,
    size: int | None = None,
    seed: int = 0,
    oversample: bool = False,
) -> Any:
    """Mix datasets so source *i* holds ``weights[i] / sum(weights)`` of the rows.

    Without ``size`` the mixture is the largest one that needs no source twice. With
    ``size``, a source too small for its share is an error unless ``oversample`` (then
    its rows repeat). Rows of each source are drawn by a seeded permutation and the
    result is shuffled with the same seed: same inputs and seed, same mixture.
    """
    import datasets
    import numpy as np

    if len(datasets_) != len(weights) or not datasets_:
        raise ValueError("mix() needs one weight per dataset and at least one dataset.")
    total_w = float(sum(weights))
    shares = [w / total_w for w in weights]
    if size is None:
        size = int(min(len(d) / s for d, s in zip(datasets_, shares, strict=True)))
    counts = [round(s * size) for s in shares]
    rng = np.random.default_rng(seed)
    parts = []
    for i, (ds, n) in enumerate(zip(datasets_, counts, strict=True)):
        if n > len(ds) and not oversample:
            raise ValueError(
                f"Source {i} has {len(ds)} rows but its weight asks for {n} of {size}; lower the mixture "
                "size, raise its weight's data, or set oversample=True to repeat rows."
            )
        reps = -(-n // len(ds))
        order = np.concatenate([rng.permutation(len(ds)) for _ in range(reps)])[:n]
        parts.append(ds.select(order.tolist()))
    mixed = datasets.concatenate_datasets(parts).shuffle(seed=seed)
    logger.info("Mixture of %d rows: %s", len(mixed), counts)
    return mixed


def load_mixture(
    sources: Sequence[SourceSpec | Mapping[str, Any]],
    *,
    size: int | None = None,
    seed: int = 0,
    oversample: bool = False,
    step_separator: str = "\n\n",
) -> Any:
    """Load every source and ``mix`` them by their weights."""
    specs = [s if isinstance(s, SourceSpec) else SourceSpec.from_dict(s) for s in sources]
    loaded = [load_source(s, step_separator=step_separator) for s in specs]
    if len(loaded) == 1 and size is None:
        return loaded[0]
    return mix(loaded, [s.weight for s in specs], size=size, seed=seed, oversample=oversample)
