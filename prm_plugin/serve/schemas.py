"""Request bodies of the OpenAI endpoints (pydantic, ``extra="forbid"``).

OpenAI fields this server cannot honour are declared so that setting them gets a clear
400 (``unsupported()``), never a silent answer that ignores them; fields OpenAI does not
know are refused by ``extra="forbid"``. The search extensions: ``search`` (the per-request
settings of ``prm_plugin.serve.settings``), ``return_trace`` (the search trace of each
choice) and ``prm_question`` (the text the PRM sees as the question).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0)
    user: str | None = None
    stream: bool = False
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    search: dict[str, Scalar] | None = None
    return_trace: bool = False
    prm_question: str | None = None

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def unsupported(self) -> list[str]:
        """The set fields this server cannot honour, each with the reason."""
        out = []
        if self.stream:
            out.append("stream=true (the answer is the result of a whole search; send stream=false)")
        if self.frequency_penalty or self.presence_penalty:
            out.append("frequency_penalty / presence_penalty (the search strategy controls sampling)")
        if self.logit_bias:
            out.append("logit_bias")
        return out


class CompletionRequest(_Request):
    """``POST /v1/completions``: ``prompt`` is a string, a list of strings, or token ids
    (one list, or a list of lists) in the policy's tokenizer."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]

    def unsupported(self) -> list[str]:
        out = super().unsupported()
        if self.echo:
            out.append("echo=true")
        if self.logprobs is not None:
            out.append("logprobs (searches return text; loglikelihood tasks need a plain model server)")
        if self.best_of is not None and self.best_of > 1:
            out.append("best_of (the search picks the answer: set search.n and search.strategy)")
        if self.suffix is not None:
            out.append("suffix")
        return out


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``: the policy's chat template builds the prompt; the
    last user message is the PRM's question."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None

    def chat(self) -> list[dict[str, str]]:
        """The messages as the chat template takes them (``developer`` counts as ``system``)."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]

    def token_cap(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def unsupported(self) -> list[str]:
        out = super().unsupported()
        if self.logprobs or self.top_logprobs:
            out.append("logprobs / top_logprobs")
        if self.tools or self.tool_choice not in (None, "none"):
            out.append("tools / tool_choice")
        if self.response_format and self.response_format.get("type") != "text":
            out.append("response_format other than text")
        return out
