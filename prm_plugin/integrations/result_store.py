"""A crash-safe store of finished searches, so a killed run resumes where it stopped.

lm-eval's ``--use_cache`` keys a response on the prompt and gen_kwargs only: reusing
its cache across strategies or PRMs would silently return another configuration's
answers. This store keys every result on the *full* configuration fingerprint plus
the request (prompt, gen_kwargs, PRM question, repeat index), and keeps one file per
configuration, so two configurations can never read each other's results.

Format: append-only JSONL, one ``{"key": ..., "record": {...}}`` per line, flushed
and fsynced after every batch. A run killed mid-write leaves at most one truncated
last line, which loading skips (with a warning) and the next append overwrites.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def request_key(config_fingerprint: str, prompt: str, gen_kwargs: Any, question: str, repeat: int) -> str:
    """The store key of one request under one configuration."""
    blob = json.dumps(
        [config_fingerprint, prompt, gen_kwargs, question, repeat],
        sort_keys=True, default=repr, ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResultStore:
    """Results of one configuration, on disk under ``folder``.

    Args:
        folder: where the store files live (created if missing).
        config_fingerprint: the configuration's fingerprint; names the file.
        config: the configuration itself, written once as the file's first line so a
            human can tell what a store holds.
    """

    def __init__(self, folder: str | os.PathLike[str], config_fingerprint: str,
                 config: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{config_fingerprint[:24]}.jsonl"
        self.fingerprint = config_fingerprint
        self._offsets: dict[str, int] = {}
        self.skipped_lines = 0
        self._end = self._index()
        if self._end == 0:
            self._append([{"config_fingerprint": config_fingerprint, "config": config or {}}])

    def __contains__(self, key: str) -> bool:
        return key in self._offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record for ``key``, or None."""
        offset = self._offsets.get(key)
        if offset is None:
            return None
        with self.path.open("rb") as f:
            f.seek(offset)
            record: dict[str, Any] = json.loads(f.readline())["record"]
        return record

    def put_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Append records and make them durable before returning."""
        self._append([{"key": key, "record": record} for key, record in items])

    def _append(self, entries: list[dict[str, Any]]) -> None:
        lines = [json.dumps(e, ensure_ascii=False, default=repr).encode("utf-8") + b"\n" for e in entries]
        with self.path.open("r+b" if self.path.exists() else "wb") as f:
            f.seek(self._end)  # drops a truncated tail left by a killed run
            f.truncate()
            for entry, line in zip(entries, lines, strict=True):
                if "key" in entry:
                    self._offsets[entry["key"]] = f.tell()
                f.write(line)
            f.flush()
            os.fsync(f.fileno())
            self._end = f.tell()

    def _index(self) -> int:
        """Read key -> offset; returns the offset after the last complete line."""
        if not self.path.exists():
            return 0
        end = 0
        with self.path.open("rb") as f:
            for line in iter(f.readline, b""):
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("truncated line")
                    entry = json.loads(line)
                except ValueError:
                    self.skipped_lines += 1
                    break
                if entry.get("config_fingerprint") not in (None, self.fingerprint):
                    raise ValueError(
                        f"{self.path} belongs to another configuration "
                        f"({entry.get('config_fingerprint')}); move it away or pick another trace_path."
                    )
                if "key" in entry:
                    self._offsets[entry["key"]] = end
                end += len(line)
        if self.skipped_lines:
            logger.warning(
                "%s: ignored a truncated last line (a run was killed while writing); "
                "that problem will be recomputed.", self.path,
            )
        return end
