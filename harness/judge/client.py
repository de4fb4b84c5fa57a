"""The judge client: any OpenAI-compatible chat server, with a cache, a spending cap and cost.

``JudgeClient.run`` sends a list of ``Request`` s with ``eval.judge.concurrency`` threads and
returns one ``Outcome`` each, in order. Retries (429, 5xx, timeouts, dropped connections,
with exponential back-off honouring Retry-After) are the openai client's own. A 200 reply
with nothing in it (empty content and no logprobs) or cut off at max_tokens before the
verdict the request expects (``Request.verdict``) is a server fault too: asked again up to
``eval.judge.retries`` times, then a failed call. Successful answers are cached on disk
(``harness.judge.cache``) and never asked again; failures are never cached, so a rerun
makes exactly the calls that failed. The API key is read from the
environment and sent as a Bearer header only: it never reaches an error, a log or a file.
"""

from __future__ import annotations

import json
import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness.errors import ConfigError
from harness.judge import cache as judge_cache
from harness.judge.calls import Outcome, Request
from harness.judge.prices import api_key, check_judge_settings, cost, load_prices, price_for

ERROR_CHARS = 300
"""An error is one line of at most this many characters (server bodies can be pages long)."""


def one_line(text: str, secret: Optional[str]) -> str:
    """Collapse whitespace, cut to ERROR_CHARS and blank the key should a server echo it back."""
    text = re.sub(r"\s+", " ", text).strip()
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


class JudgeClient:
    """Runs judge requests against ``settings`` (the eval.judge block as a dict), caching under ``cache_dir``."""

    def __init__(self, settings: Dict[str, Any], cache_dir: Path) -> None:
        """Validate the settings (ConfigError, one line) and build the HTTP client; no call is made yet."""
        check_judge_settings(settings)
        import logging

        for name in ("httpx", "openai"):  # one INFO line per request would bury the sweep's own output
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            import openai
        except ImportError:
            raise ConfigError("eval.judge: judging needs the openai package (a core dependency): pip install -e .") from None
        self._openai = openai
        self.model: str = settings.get("model") or "gpt-4"
        self.max_usd: Optional[float] = settings.get("max_usd")
        self.concurrency: int = int(settings.get("concurrency") or 8)
        self.retries: int = int(settings.get("retries", 4))
        self.prices = load_prices(settings.get("prices"))
        self.cache = judge_cache.JudgeCache(cache_dir)
        self._key = api_key(settings)
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # signalled whenever a call's reservation is released
        self._spent = 0.0  # for the cap: real costs, or the reservation where the server reported no usage
        self._reserved = 0.0
        self._stats = {"calls": 0, "cached": 0, "failed": 0, "retries": 0,
                       "prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0}
        # The openai client stamps every attempt with its retry number: an event hook counts retries for free.
        # The pool holds at least one connection per worker thread, kept alive between calls: a pool smaller
        # than eval.judge.concurrency would queue calls behind each other or reconnect for every call.
        import httpx

        limits = httpx.Limits(max_connections=max(self.concurrency, 100), max_keepalive_connections=max(self.concurrency, 20))
        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._on_request]}, limits=limits)
        self._client = openai.OpenAI(
            base_url=settings.get("base_url"), api_key=self._key or "EMPTY", http_client=http_client,
            timeout=float(settings.get("timeout_s") or 120), max_retries=int(settings.get("retries", 4)),
        )

    @property
    def stats(self) -> Dict[str, Any]:
        """This client's totals: network calls, cache hits, failures, retries, tokens and USD."""
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> "JudgeClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run(self, requests: List[Request]) -> List[Outcome]:
        """One Outcome per request, in order: cache hits first, then the rest concurrently."""
        outcomes: List[Optional[Outcome]] = [None] * len(requests)
        todo = []
        for index, request in enumerate(requests):
            cache_key = judge_cache.key(request, self.model)
            hit = self.cache.get(cache_key)
            # an empty reply cached before such replies were retried is asked again, not served forever
            if hit is None or reply_fault(request, hit.get("text") or "", hit.get("top_logprobs"), None):
                todo.append((index, request, cache_key))
                continue
            outcomes[index] = Outcome(ok=True, text=hit["text"], top_logprobs=hit.get("top_logprobs"), cached=True,
                                      error=None, prompt_tokens=int(hit.get("prompt_tokens") or 0),
                                      completion_tokens=int(hit.get("completion_tokens") or 0))
        with self._lock:
            self._stats["cached"] += len(requests) - len(todo)
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)), thread_name_prefix="judge") as pool:
                results = pool.map(lambda item: self._call(item[1], item[2]), todo)
                for (index, _, _), outcome in zip(todo, results):
                    outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def _on_request(self, request: Any) -> None:
        """httpx request hook: an attempt numbered above 0 is a retry."""
        if request.headers.get("x-stainless-retry-count", "0") != "0":
            with self._lock:
                self._stats["retries"] += 1

    def _reservation(self, request: Request) -> float:
        """Upper bound on one call's cost: ~3 characters a token for the prompt, all of max_tokens out."""
        price = price_for(self.model, self.prices)
        if price is None:
            return 0.0
        prompt = math.ceil(len(json.dumps(request.messages)) / 3)
        return (prompt * price[0] + request.max_tokens * price[1]) / 1e6

    def _failed(self, error: str) -> Outcome:
        with self._lock:
            self._stats["failed"] += 1
        return Outcome(ok=False, text=None, top_logprobs=None, cached=False, error=error)

    def _call(self, request: Request, cache_key: str) -> Outcome:
        """One judgment: a call, asked again (up to ``retries`` times) while the reply is empty or truncated."""
        for _ in range(self.retries + 1):
            outcome, fault = self._attempt(request, cache_key)
            if fault is None:
                return outcome
        with self._lock:
            self._stats["failed"] += 1
        return Outcome(ok=False, text=None, top_logprobs=None, cached=False, error=fault,
                       prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens, usd=outcome.usd)

    def _attempt(self, request: Request, cache_key: str) -> Tuple[Outcome, Optional[str]]:
        """One network call (with the openai client's retries), within the spending cap.

        Returns the outcome and, for a 200 reply that is empty or truncated before a verdict,
        the fault (the reply is then neither cached nor final).
        """
        reserve = self._reservation(request)
        with self._settled:
            # Refuse only what cannot fit once the calls in flight settle (they usually cost far less than
            # reserved); until then wait, so high concurrency does not refuse calls the budget could pay.
            while self.max_usd is not None and self._spent + self._reserved + reserve > self.max_usd:
                if self._spent + reserve > self.max_usd:
                    self._stats["failed"] += 1
                    return Outcome(ok=False, text=None, top_logprobs=None, cached=False,
                                   error=f"budget: eval.judge.max_usd={self.max_usd:g} reached (spent ${self._spent:.4f})"), None
                self._settled.wait()
            self._reserved += reserve
            self._stats["calls"] += 1
        kwargs: Dict[str, Any] = {}
        if request.logprobs:
            kwargs["logprobs"] = True
            if request.top_logprobs is not None:
                kwargs["top_logprobs"] = request.top_logprobs
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=request.messages, max_tokens=request.max_tokens,
                temperature=request.temperature, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes this request's one-line error
            with self._settled:
                self._reserved -= reserve
                self._settled.notify_all()
            return self._failed(self._describe(exc)), None
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        usd = cost(self.model, prompt_tokens, completion_tokens, self.prices)
        with self._settled:
            self._reserved -= reserve
            # No usage reported: count the upper bound against the cap rather than nothing.
            self._spent += usd if usage is not None else reserve
            self._settled.notify_all()
            self._stats["prompt_tokens"] += prompt_tokens
            self._stats["completion_tokens"] += completion_tokens
            self._stats["usd"] += usd
        choices = getattr(response, "choices", None) or []
        if not choices or choices[0].message is None:  # malformed: nothing was answered, so it is asked again
            outcome = self._failed("empty response: no choices")
            outcome.prompt_tokens, outcome.completion_tokens, outcome.usd = prompt_tokens, completion_tokens, usd
            return outcome, None
        text = choices[0].message.content or ""
        top = _top_logprobs(choices[0])
        outcome = Outcome(ok=True, text=text, top_logprobs=top, cached=False, error=None,
                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, usd=usd)
        # An empty or cut-off reply is a passing server fault, not the judge's verdict: caching it (as an
        # unparseable judgment) would make the fault permanent, so it is asked again instead.
        fault = reply_fault(request, text, top, getattr(choices[0], "finish_reason", None))
        if fault is None:
            self.cache.put(cache_key, text=text, top_logprobs=top, prompt_tokens=prompt_tokens,
                           completion_tokens=completion_tokens, model=self.model)
        return outcome, fault

    def _describe(self, exc: Exception) -> str:
        """HTTP status / exception type and message, one line, key blanked."""
        if isinstance(exc, self._openai.APIStatusError):
            # The server's own message when its body has one (OpenAI's {"error": {"message"}}), not the dict's repr.
            body = exc.body if isinstance(exc.body, dict) else {}
            message = body.get("message") if isinstance(body.get("message"), str) else exc.message
            return one_line(f"HTTP {exc.status_code} {type(exc).__name__}: {message}", self._key)
        return one_line(f"{type(exc).__name__}: {exc}", self._key)


def warm() -> float:
    """Pay the judge's one-time, per-process import cost now (seconds taken); no network call.

    The first call of a process otherwise spends ~0.2-0.5 s before anything is sent: httpx's
    transport imports httpcore (and trio when installed) and the first ``chat.completions``
    access imports openai's chat resources and builds their ~650 pydantic models. The
    background judge (``harness.judge.watch``) calls this while the sweep trains, so neither it
    nor the final judge pays that in front of its first call.
    """
    import time

    started = time.perf_counter()
    try:
        import openai
    except ImportError:
        return 0.0
    import openai.resources.chat  # noqa: F401 - the import is the point
    import openai.types.chat  # noqa: F401
    openai.DefaultHttpxClient().close()
    return time.perf_counter() - started


def reply_fault(request: Request, text: str, top: Optional[List[Dict[str, Any]]],
                finish_reason: Optional[str]) -> Optional[str]:
    """Why a 200 reply is not a judgment (one line), or None: empty, or cut off before the expected verdict."""
    if not text.strip() and not top:
        return "empty reply: the server answered 200 with no content"
    if finish_reason == "length" and request.verdict and not re.search(request.verdict, text):
        return (f"truncated reply: cut off at max_tokens={request.max_tokens} before a verdict "
                f"(raise eval.judge.max_tokens if this persists)")
    return None


def _top_logprobs(choice: Any) -> Optional[List[Dict[str, Any]]]:
    """The first generated token's alternatives as ``[{"token", "logprob"}]``, or None when absent."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    alternatives = getattr(content[0], "top_logprobs", None)
    if not alternatives:
        return None
    return [{"token": item.token, "logprob": float(item.logprob)} for item in alternatives]
