"""Loading a task's data: the upstream dataset, or a local file in the same format."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "PRM_PLUGIN_DATA_"


def override(task: str, metadata: Mapping[str, Any]) -> list[str] | None:
    """Local data files for ``task``, from ``--metadata {"<task>_data_files": ...}`` or
    the ``PRM_PLUGIN_DATA_<TASK>`` environment variable (``os.pathsep``-separated)."""
    value = metadata.get(f"{task}_data_files") or os.environ.get(ENV_PREFIX + task.upper())
    if not value:
        return None
    files = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value).split(os.pathsep)
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        source = f"{task}_data_files" if metadata.get(f"{task}_data_files") else ENV_PREFIX + task.upper()
        raise FileNotFoundError(f"{task}: data file(s) {', '.join(missing)} (from {source}) do not exist.")
    return files


def load(task: str, metadata: Mapping[str, Any], upstream: Callable[[], Any], split: str = "test") -> Any:
    """A ``DatasetDict`` with ``split``: local JSON/JSONL/parquet files if overridden,
    else ``upstream()``."""
    import datasets

    files = override(task, metadata)
    if files is None:
        return upstream()
    builder = "parquet" if all(f.endswith(".parquet") for f in files) else "json"
    return datasets.load_dataset(builder, data_files={split: files})
