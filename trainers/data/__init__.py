"""Data loaders producing TRL stepwise rows (``prompt``, ``completions``, ``labels``,
plus ``source``): PRM800K, Math-Shepherd, already-stepwise datasets, and weighted
mixtures of them."""

from __future__ import annotations

from prm_plugin.trainers.data._io import clean_step, read_records, stepwise_features
from prm_plugin.trainers.data.math_shepherd import load_math_shepherd
from prm_plugin.trainers.data.mixture import (
    SourceSpec,
    load_mixture,
    load_source,
    load_stepwise,
    mix,
)
from prm_plugin.trainers.data.prm800k import load_prm800k, load_problem_texts, normalize_problem

__all__ = [
    "SourceSpec",
    "clean_step",
    "load_math_shepherd",
    "load_mixture",
    "load_prm800k",
    "load_problem_texts",
    "load_source",
    "load_stepwise",
    "mix",
    "normalize_problem",
    "read_records",
    "stepwise_features",
]
