"""The server's limits and batching settings (``prm-plugin serve`` flags)."""

from __future__ import annotations

from dataclasses import dataclass

#: Where the server listens unless told otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass
class ServeConfig:
    """Limits and batching of one ``prm-plugin serve`` process.

    Attributes:
        model_name: the name ``/v1/models`` lists and requests must use (``model``).
        api_key: when set, every endpoint but ``/health`` needs ``Authorization: Bearer <key>``.
        max_batch: problems gathered into one ``strategy.search`` call at most.
        batch_wait_s: the pause in arrivals that releases a batch (counted from the last
            arrival or the end of the previous batch, whichever is later).
        batch_max_wait_s: the longest a queued problem waits for an idle worker to start it.
        max_queue: problems waiting or running at most; further requests get 503.
        max_n: the largest search budget ``n`` a request may ask for; it also bounds the
            strategy's other integer parameters (``beam_width``, ``simulations``, ...).
        max_tokens: the largest ``max_tokens`` a request may ask for (and the bound of
            ``max_step_tokens``).
        default_max_tokens: ``max_tokens`` when a request gives none.
        max_choices: the largest OpenAI ``n`` (final answers per prompt, one search each).
        max_prompts: prompts in one ``/v1/completions`` request at most.
        max_stop: stop strings per request at most.
        max_body_bytes: request bodies larger than this get 413.
    """

    model_name: str = "prm-plugin"
    api_key: str | None = None
    max_batch: int = 64
    batch_wait_s: float = 0.1
    batch_max_wait_s: float = 1.0
    max_queue: int = 1024
    max_n: int = 64
    max_tokens: int = 4096
    default_max_tokens: int = 256
    max_choices: int = 8
    max_prompts: int = 64
    max_stop: int = 16
    max_body_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_n", "max_tokens", "default_max_tokens", "max_choices",
                     "max_prompts", "max_stop", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.batch_wait_s < 0 or self.batch_max_wait_s < self.batch_wait_s:
            raise ValueError(f"need 0 <= batch_wait_s <= batch_max_wait_s, got {self.batch_wait_s} and "
                             f"{self.batch_max_wait_s} seconds.")
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) exceeds max_tokens ({self.max_tokens}).")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must be a non-empty string (or None for no authentication).")
        if not self.model_name.strip():
            raise ValueError("model_name must be a non-empty string.")
