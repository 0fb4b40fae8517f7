"""Fitting a PRM query into the model's context (``on_overflow="truncate"``).

A query is laid out as token-id segments: the question's, then one per step, each
step's score on its segment's last token (``prm_plugin.prm.scorer``). When the whole
sequence is longer than the PRM's context, ``fit_query`` keeps every step and cuts,
in this order:

1. the question, from the left: the family's own layout is applied to the question's
   last characters (``question_segment(question[c:])``), so templates, BOS and
   separators stay intact;
2. then the oldest steps: the steps are split into consecutive runs that each fit
   with a (cut) question, and each run is scored as its own sequence. A step's score
   only depends on what precedes it (the PRMs are causal), so every step is still
   scored, with as much of its own context as fits;
3. a single step longer than the whole context keeps its last tokens (where its
   score sits).

Worked example (one token per character, a 10-position context; the question segment
is ``"Q:" + question``)::

    >>> seg = lambda q: tuple("Q:" + q)
    >>> parts, cut = fit_query("abcdef", [tuple("xy|"), tuple("zw|")], 10, seg)
    >>> ["".join(map(str, p[0])) for p in parts], cut
    (['Q:ef'], 4)

The question keeps ``"ef"``: with both steps (6 tokens) it may take 4 positions.
``grain`` rounds the question's room down to a multiple of itself, so candidates of
similar length cut the question at the same place and share its cached KV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prm_plugin.prm.kv_cache import Segment

QuestionSegment = Callable[[str], Segment]
#: A cut question's room is rounded down to a multiple of ``max_length // QUESTION_GRAIN``,
#: so candidates of similar length share the cut question (and its cached KV); every
#: scorer uses it, so the in-process and the vLLM scorer cut a query alike.
QUESTION_GRAIN = 16


def fit_question(question: str, room: int, question_segment: QuestionSegment, grain: int = 1) -> Segment:
    """The segment of the longest suffix of ``question`` that takes at most ``room``
    tokens (rounded down to a multiple of ``grain`` where that still holds the empty
    question's layout).

    >>> fit_question("abcdef", 5, lambda q: tuple("Q:" + q))
    ('Q', ':', 'd', 'e', 'f')
    """
    base = len(question_segment(""))
    if room < base:
        raise ValueError(f"room={room} cannot hold even the empty question's layout ({base} tokens).")
    target = room - room % grain if grain > 1 and room - room % grain >= base else room
    whole = question_segment(question)
    if len(whole) <= target:
        return whole
    lo, hi = 1, len(question)  # cut characters: question[hi:] fits (hi = len gives the empty question)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(question_segment(question[mid:])) <= target:
            hi = mid
        else:
            lo = mid + 1
    seg = question_segment(question[hi:])
    while len(seg) > target and hi < len(question):  # tokenisation is not strictly monotone
        hi += 1
        seg = question_segment(question[hi:])
    return seg


def fit_query(
    question: str, steps: Sequence[Segment], limit: int, question_segment: QuestionSegment, grain: int = 1,
    fit: Callable[[str, int], Segment] | None = None,
) -> tuple[list[list[Segment]], int]:
    """Split a too-long query into sequences that each fit ``limit`` positions.

    Args:
        question: the query's question text.
        steps: the step segments (in order; their scores come out in the same order).
        limit: the PRM's context, in tokens.
        question_segment: the family's question layout (text -> segment).
        grain: see ``fit_question``.
        fit: ``(question, room) -> segment``, default ``fit_question`` (a caller may pass a
            cached one; its probes should not fill the question-segment cache).

    Returns:
        ``(parts, cut_tokens)``: each part is ``[question segment, step segments...]``;
        concatenating the parts' step scores gives one score per step. ``cut_tokens`` is
        how many tokens of the full sequence the last step's context lacks.

    Raises:
        ValueError: the layout of an empty question alone fills the context.
    """
    fit = fit or (lambda q, r: fit_question(q, r, question_segment, grain))
    base = question_segment("")
    room = limit - len(base)
    if room < 1:
        raise ValueError(
            f"The PRM's layout of an empty question takes {len(base)} tokens, its whole context of {limit}; "
            "no step can be scored. Use a PRM with a longer context."
        )
    full = len(question_segment(question)) + sum(len(s) for s in steps)
    parts: list[list[Segment]] = []
    end = len(steps)
    while end > 0:
        start, used = end, 0
        while start > 0 and used + len(steps[start - 1]) <= room:
            start -= 1
            used += len(steps[start])
        if start == end:  # this step alone overfills the context: keep its end, where its score sits
            parts.append([base, steps[end - 1][-room:]])
            end -= 1
            continue
        parts.append([fit(question, limit - used), *steps[start:end]])
        end = start
    parts.reverse()
    cut = full - sum(len(s) for s in parts[-1]) if parts else 0
    return parts, cut
