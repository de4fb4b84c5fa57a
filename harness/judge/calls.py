"""What one judge call is and what it got: the objects the benchmarks' scorers, the client and the cache share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class Request:
    """One judge call: chat messages plus sampling; ``tag`` rides along untouched (not in the cache key)."""

    messages: List[Dict[str, str]]
    """Chat messages, ``{"role", "content"}`` each."""
    max_tokens: int
    """Most tokens the judge may generate."""
    temperature: float = 0.0
    """Sampling temperature (0: the judge's most likely verdict)."""
    logprobs: bool = False
    """Ask for log-probabilities of the generated tokens."""
    top_logprobs: Optional[int] = None
    """How many alternatives per generated token (only with ``logprobs``)."""
    repeat: int = 0
    """Repeat index: repeats of one judgment are distinct calls and distinct cache entries."""
    prompt_hash: str = ""
    """Digest of the judge prompt template, so a changed prompt never hits an old answer."""
    verdict: Optional[str] = None
    """A regex a reply cut off at ``max_tokens`` must match to count (else it is retried, never cached);
    None: a truncated reply counts (AlpacaEval's one-token verdict is always cut off). Not in the cache key."""
    tag: Dict[str, Any] = field(default_factory=dict)
    """The caller's bookkeeping (question id, turn, who), returned with the judgment."""


@dataclass
class Outcome:
    """What one request got: the judge's text (and first-token alternatives) or a one-line error."""

    ok: bool
    """True when the judge answered with non-empty text."""
    text: Optional[str]
    """The judge's answer; None when failed."""
    top_logprobs: Optional[List[Dict[str, Any]]]
    """``[{"token", "logprob"}]`` for the first generated token; None when the server gave none."""
    cached: bool
    """Answered from the on-disk cache (no call, no cost)."""
    error: Optional[str]
    """One line: HTTP status / exception type and message, or the budget that stopped the call."""
    prompt_tokens: int = 0
    """Prompt tokens the server reported (for a cached answer: those of the original call)."""
    completion_tokens: int = 0
    """Generated tokens the server reported (for a cached answer: those of the original call)."""
    usd: float = 0.0
    """Cost of this call from the price table; 0 when cached or unpriced."""
