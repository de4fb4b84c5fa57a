"""The judge phase: score the stored answers of a sweep's cells with an LLM judge.

Runs in the parent after the cells (``harness.sweep.callbacks.finish``) and on demand
(``python -m harness.judge``). Never generates: it reads each cell's answers.jsonl and
its untrained base's (the baseline cache folder), builds every judge request of the
sweep, sends the distinct ones through one ``JudgeClient`` (shared concurrency, cache
and spending cap), and writes one result per cell and judge setting under the answers:
``evals/<name>-<key>/judge-<key>/result.json`` (status, metric rows, counts, cost) plus
``judgments.jsonl`` (every verdict with the judge's text, for auditing). The result's
``judge`` block says which judge and how (model, base_url, repeats, prompt_hash,
null_control, n_judged, limit, total, temperatures, sample) and ``caveats`` lists, as
sentences, what limits the number (``harness.judge.caveats``).

A result with any failed call is ``failed`` and names the command that retries it: the
cache holds every successful call, so the rerun makes exactly the failed calls again.
"""

from __future__ import annotations

import importlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set
from urllib.parse import urlsplit, urlunsplit

from harness.files import read_json, write_json_atomic, write_text_atomic
from harness.judge.caveats import caveats, judge_facts
from harness.judge.keys import judge_key
from harness.store.layout import RESULT, eval_dir, read_eval, read_manifest, update_manifest

JUDGMENTS = "judgments.jsonl"
ANSWERS = "answers.jsonl"
LOCK = ".judge.lock"
"""The sweep's judge lock file (``judge_lock``)."""


@dataclass
class Work:
    """One cell's answers to judge under one judge setting."""

    num: str
    cell_id: str
    cell_dir: Path
    name: str
    key: str
    block: Dict[str, Any]
    answers: List[Dict[str, Any]]
    base: Optional[List[Dict[str, Any]]]
    inputs: Any = None
    requests: Dict[str, list] = field(default_factory=dict)
    """who (cell, base, null) -> that side's requests."""


def bench(name: str) -> Any:
    """The scoring module of a judged benchmark (harness.judge.mt_bench / alpaca_eval)."""
    return importlib.import_module(f"harness.judge.{name}")


def read_answers(path: Path) -> Optional[List[Dict[str, Any]]]:
    """The rows of an answers.jsonl, or None when it is missing."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def public_url(url: Optional[str]) -> Optional[str]:
    """The server address without any user:password part (that would be a secret)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _base_answers(result: Dict[str, Any], cache_dir: Path) -> Optional[List[Dict[str, Any]]]:
    """The untrained base's answers, from the baseline cache folder the generation result names."""
    key = (result.get("baseline") or {}).get("key")
    return read_answers(Path(cache_dir).expanduser() / "baselines" / key / ANSWERS) if key else None


def collect(sweep_dir: Path, settings: Dict[str, Any], overrides: Dict[str, Dict[str, Any]], force: bool,
            say: Callable[[str], None], only: Optional[Set[str]] = None, update: bool = True) -> List[Work]:
    """The judge work of a sweep: every judged benchmark of every cell whose answers are stored ok.

    ``overrides``: benchmark name -> judge-only block keys given on the command line
    (e.g. another judge prompt file). The manifest is updated to point at the judge
    results this setting produces, so the summary shows them -- unless ``update`` is False
    (the judge running during the sweep: the jobs still write their own entries, and a
    read-modify-write from here could undo one). ``only``: cell ids to consider (None: all).
    """
    manifest = read_manifest(sweep_dir) or {"jobs": {}}
    cache_dir = Path(settings["cache_dir"]).expanduser()
    out: List[Work] = []
    seen = set()
    for num, job in sorted(manifest["jobs"].items(), key=lambda item: int(item[0])):
        if only is not None and job.get("cell_id") not in only:
            continue
        judges = dict(job.get("judges") or {})
        for name in list(judges):
            cell_dir = Path(sweep_dir) / job["cell_id"]
            result = read_eval(cell_dir, job["evals"][name]) or {}
            block = {**(result.get("config") or {}), **overrides.get(name, {})}
            key = judge_key(name, job["evals"][name], block, settings["judge"])
            judges[name] = key
            if (job["cell_id"], key) in seen or result.get("status") != "ok":
                continue  # a cell without answers shows its generation failure in the summary
            seen.add((job["cell_id"], key))
            if not force and (read_eval(cell_dir, key) or {}).get("status") == "ok":
                continue
            answers = read_answers(eval_dir(cell_dir, job["evals"][name]) / ANSWERS)
            if answers is None:
                say(f"#{num} {job['cell_id']}: {name}: no {ANSWERS} beside the generation result; nothing to judge")
                continue
            out.append(Work(num, job["cell_id"], cell_dir, name, key, block, answers, _base_answers(result, cache_dir)))
        if update and (judges != (job.get("judges") or {}) or job.get("judge") != settings):
            update_manifest(sweep_dir, num, {**job, "judges": judges, "judge": settings})
    return out


def plan_requests(work: List[Work], judge: Dict[str, Any]) -> List[Any]:
    """Fill each work item's requests (cell, base, null control); return the distinct requests of them all."""
    from harness.judge.cache import key as cache_key

    distinct: Dict[str, Any] = {}
    for item in work:
        module = bench(item.name)
        item.inputs = module.load_inputs(item.block)
        sides = {"cell": item.answers, "base": item.base}
        if judge.get("null_control"):
            sides["null"] = module.null_answers(item.inputs, item.answers)
        for who, answers in sides.items():
            if answers is None:
                continue
            item.requests[who] = module.requests(answers, item.inputs, judge, who)
            for request in item.requests[who]:
                distinct.setdefault(cache_key(request, judge["model"]), request)
    return list(distinct.values())


def _status(judged: Dict[str, List[Dict[str, Any]]], sweep_dir: Path) -> tuple[str, Optional[str]]:
    failed = [j for side in judged.values() for j in side if j.get("status") == "failed"]
    if not failed:
        return "ok", None
    total = sum(len(side) for side in judged.values())
    first = next((j.get("error") for j in failed if j.get("error")), "unknown")
    return "failed", (f"{len(failed)} of {total} judge calls failed (first: {first}); "
                      f"python -m harness.judge {sweep_dir} retries only those")


def write_result(item: Work, outcomes: Dict[str, Any], judge: Dict[str, Any], sweep_dir: Path, wall: float) -> Dict[str, Any]:
    """Score one work item from the outcomes (by cache key) and write its result and judgments."""
    from harness.judge.cache import key as cache_key

    module = bench(item.name)
    judged = {who: module.judgments(reqs, [outcomes[cache_key(r, judge["model"])] for r in reqs])
              for who, reqs in item.requests.items()}
    rows = module.rows(judged["cell"], judged.get("base"), judged.get("null"), item.answers, item.inputs, judge)
    status, error = _status(judged, sweep_dir)
    spent = [outcomes[cache_key(r, judge["model"])] for r in item.requests["cell"]]
    facts = judge_facts(item.name, item.block, judged["cell"], item.requests["cell"], getattr(item.inputs, "total", None))
    result = {
        "evaluator": item.name, "key": item.key, "status": status, "error": error, "rows": rows,
        "judge": {"model": judge["model"], "base_url": public_url(judge.get("base_url")), "repeats": judge.get("repeats"),
                  "prompt_hash": getattr(item.inputs, "prompt_hash", None), "null_control": judge.get("null_control"),
                  **facts},
        "caveats": caveats(item.name, facts, rows, judge),
        "cost": {"usd": sum(o.usd for o in spent), "prompt_tokens": sum(o.prompt_tokens for o in spent),
                 "completion_tokens": sum(o.completion_tokens for o in spent),
                 "calls": sum(1 for o in spent if not o.cached), "cached": sum(1 for o in spent if o.cached)},
        "timings_s": {f"judge_{item.name}": wall},
        "created": time.time(),
    }
    folder = eval_dir(item.cell_dir, item.key)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(j, ensure_ascii=False) for side in judged.values() for j in side]
    write_text_atomic(folder / JUDGMENTS, "\n".join(lines) + "\n")
    write_json_atomic(folder / RESULT, result)
    return result


def _headline(result: Dict[str, Any]) -> str:
    shown = {"mt_bench", "mt_bench_delta", "alpaca_wr", "alpaca_lc_wr", "alpaca_lc_wr_minimal", "alpaca_wr_delta"}
    parts = [f"{r['metric']} {r['value']:.3g}" for r in result["rows"]
             if r["metric"] in shown and r.get("task") == result["evaluator"] and isinstance(r.get("value"), (int, float))]
    return "  ".join(parts)


@contextmanager
def judge_lock(sweep_dir: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the sweep's judge lock (``<sweep>/.judge.lock``, flock) while judging; yields False when
    ``wait`` is False and another judge holds it.

    One judge at a time per sweep: the one running during the sweep (``harness.judge.watch``), the
    one after it and ``python -m harness.judge`` would otherwise send the same uncached requests
    at once and pay twice (the cache dedups only calls that have finished). The kernel drops the
    lock when its holder dies.
    """
    from harness.files import file_lock

    with file_lock(Path(sweep_dir) / LOCK, wait) as held:
        yield held


def judge_sweep(sweep_dir: Path, settings: Dict[str, Any], overrides: Optional[Dict[str, Dict[str, Any]]] = None,
                force: bool = False, say: Callable[[str], None] = print, only: Optional[Set[str]] = None,
                update: bool = True, wait: bool = True) -> Optional[Dict[str, Any]]:
    """Judge what the sweep still lacks under ``settings`` ({"judge": eval.judge block, "cache_dir": ...}).

    Returns the client's counts (calls, cached, failed, usd, ...) plus the number of results written;
    None only when ``wait`` is False and another judge of this sweep is running (``judge_lock``).
    ``only`` and ``update``: see ``collect``.
    """
    with judge_lock(Path(sweep_dir), wait) as held:
        if not held:
            return None
        return _judge_sweep(Path(sweep_dir), settings, overrides, force, say, only, update)


def _judge_sweep(sweep_dir: Path, settings: Dict[str, Any], overrides: Optional[Dict[str, Dict[str, Any]]],
                 force: bool, say: Callable[[str], None], only: Optional[Set[str]], update: bool) -> Dict[str, Any]:
    """``judge_sweep`` under the judge lock."""
    from harness.judge.client import JudgeClient

    work = collect(Path(sweep_dir), settings, overrides or {}, force, say, only, update)
    if not work:
        if only is not None:  # the background judge's cells were judged by another judge meanwhile: nothing to say
            return {"results": 0, "calls": 0, "cached": 0, "failed": 0, "usd": 0.0}
        say("judge: every judged result of this sweep is stored ok under these settings; nothing to call "
            "(--force re-scores them from the cache)")
        return {"results": 0, "calls": 0, "cached": 0, "failed": 0, "usd": 0.0}
    judge = settings["judge"]
    started = time.perf_counter()
    distinct = plan_requests(work, judge)
    say(f"judge: {len(distinct)} distinct judgments for {len(work)} result(s) with {judge['model']} at "
        f"{public_url(judge.get('base_url')) or 'the OpenAI API'} (concurrency {judge.get('concurrency')})")
    from harness.judge.cache import key as cache_key

    with JudgeClient(judge, Path(settings["cache_dir"]).expanduser()) as client:
        outcomes = {cache_key(r, judge["model"]): o for r, o in zip(distinct, client.run(distinct))}
    wall = time.perf_counter() - started
    for item in work:
        result = write_result(item, outcomes, judge, Path(sweep_dir), wall)
        note = f"  {result['error']}" if result["error"] else ""
        say(f"#{item.num} {item.cell_id}: {item.name} judged: {result['status']}  {_headline(result)}{note}".rstrip())
        for row in result["rows"]:
            if row.get("warning"):
                say(f"note: #{item.num} {item.cell_id}: {row['warning']}")
    stats = dict(client.stats)
    say(f"judge: {stats.get('calls', 0)} calls, {stats.get('cached', 0)} from the cache, {stats.get('failed', 0)} failed, "
        f"${stats.get('usd', 0.0):.4f}, {wall:.1f} s")
    return {**stats, "results": len(work)}


def sweep_settings(manifest: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The judge settings the sweep's command gave (its first judged job's), or None when nothing is judged."""
    return next((job.get("judge") for job in manifest.get("jobs", {}).values() if job.get("judges")), None)


def judge_pending(sweep_dir: Path, say: Callable[[str], None] = print) -> Optional[Dict[str, Any]]:
    """After a sweep: judge its cells with the settings the sweep's command gave (None when nothing is judged)."""
    settings = sweep_settings(read_manifest(sweep_dir) or {})
    if settings is None:
        return None
    return judge_sweep(sweep_dir, settings, say=say)


def stored_result(cell_dir: Path, key: str) -> Optional[Dict[str, Any]]:
    """A judge result as stored (for tests and reports)."""
    return read_json(eval_dir(cell_dir, key) / RESULT)
