"""A crash-safe store of finished searches, so a killed run resumes where it stopped.

lm-eval's ``--use_cache`` keys a response on the prompt and gen_kwargs only: reusing
its cache across strategies or PRMs would silently return another configuration's
answers. This store keys every result on the *full* configuration fingerprint plus
the request (prompt, gen_kwargs, PRM question, repeat index), and keeps one file per
configuration, so two configurations can never read each other's results.

Data-parallel ranks (``shard="rank1"``): each rank appends to its own file
(``<fingerprint>.rank1.jsonl``) and reads every file of the configuration (the
single-process one and all ranks'), so a run resumes under any number of ranks: a
request's key does not depend on which rank searched it.

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
        shard: this writer's tag (a data-parallel rank: ``rank0``, ...): it appends to
            ``<fingerprint>.<shard>.jsonl`` and reads the configuration's other files too.
    """

    def __init__(self, folder: str | os.PathLike[str], config_fingerprint: str,
                 config: dict[str, Any] | None = None, shard: str | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = config_fingerprint[:24]
        self.path = self.folder / (f"{stem}.{shard}.jsonl" if shard else f"{stem}.jsonl")
        self.fingerprint = config_fingerprint
        self._offsets: dict[str, int] = {}
        self._elsewhere: dict[str, tuple[Path, int]] = {}  # keys in the other writers' files
        self.skipped_lines = 0
        siblings = [self.folder / f"{stem}.jsonl", *sorted(self.folder.glob(f"{stem}.rank*.jsonl"))]
        for other in siblings:
            if other != self.path and other.exists():
                found: dict[str, int] = {}
                self._read(other, found, own=False)
                self._elsewhere.update((key, (other, offset)) for key, offset in found.items())
        self._end = self._index()
        if self._end == 0:
            self._append([{"config_fingerprint": config_fingerprint, "config": config or {}}])

    def __contains__(self, key: str) -> bool:
        return key in self._offsets or key in self._elsewhere

    def __len__(self) -> int:
        return len(self._offsets.keys() | self._elsewhere.keys())

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record for ``key`` (from any writer's file), or None."""
        if key in self._offsets:
            path, offset = self.path, self._offsets[key]
        elif key in self._elsewhere:
            path, offset = self._elsewhere[key]
        else:
            return None
        with path.open("rb") as f:
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
        """Read this writer's key -> offset; returns the offset after its last complete line."""
        return self._read(self.path, self._offsets, own=True)

    def _read(self, path: Path, offsets: dict[str, int], own: bool) -> int:
        """Index ``path`` into ``offsets``; returns the offset after the last complete line
        (another writer's file may end in a line that writer is still appending)."""
        if not path.exists():
            return 0
        end = 0
        skipped = 0
        with path.open("rb") as f:
            for line in iter(f.readline, b""):
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("truncated line")
                    entry = json.loads(line)
                except ValueError:
                    skipped += 1
                    break
                if entry.get("config_fingerprint") not in (None, self.fingerprint):
                    raise ValueError(
                        f"{path} belongs to another configuration "
                        f"({entry.get('config_fingerprint')}); move it away or pick another trace_path."
                    )
                if "key" in entry:
                    offsets[entry["key"]] = end
                end += len(line)
        if skipped and own:
            self.skipped_lines += skipped
            logger.warning(
                "%s: ignored a truncated last line (a run was killed while writing); "
                "that problem will be recomputed.", path,
            )
        return end
