"""MMLU-format local files -> an lm-eval task folder the harness generates.

``eval.lm_eval.mmlu_dir=PATH`` points at a folder with two JSON-lines files::

    dev.jsonl    few-shot examples (MMLU takes the first k of the question's subject)
    test.jsonl   the questions that are scored

one question per line, in the schema of the hub ``cais/mmlu`` dataset::

    {"question": "...", "subject": "anatomy", "choices": ["..", "..", "..", ".."], "answer": 2}

``answer`` is the 0-based index of the right choice. From these the harness writes one
lm-eval task per subject (prompt, choices, few-shot sampler and metric copied from
lm-eval's own ``mmlu`` task) and a group named ``mmlu`` that averages accuracy over all
questions, so a local folder is scored exactly like the hub task and reported under the
same name. The folder is keyed by a hash of the two files, written once into the cache
and shared by every cell and the baseline.

Parent-safe: reads JSON and writes YAML, never imports torch or lm_eval.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Tuple

from harness.errors import ConfigError, safe_repr
from harness.files import make_staging_dir

KEY = "eval.lm_eval.mmlu_dir"
SPLITS = ("dev", "test")
GROUP = "mmlu"
"""The generated group takes lm-eval's name, so ``tasks=[mmlu]`` selects it and rows read ``mmlu``."""
TASK_PREFIX = "mmlu_local_"
"""Prefix of the per-subject tasks; distinct from lm-eval's ``mmlu_<subject>`` so both can be indexed."""
GENERATOR_VERSION = 1
"""Bump when the generated YAML changes, so stale task folders are not reused."""
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class LocalMmlu:
    """A validated MMLU-format folder: questions per subject and split, and a content hash."""

    root: Path
    fingerprint: str
    subjects: Tuple[str, ...]
    """Subjects that have test questions, as task-safe names, sorted."""
    rows: Dict[str, Dict[str, List[dict]]]
    """split -> subject -> questions, in file order (the order lm-eval's first_n sampler uses)."""

    def dev_count(self, subject: str) -> int:
        """Few-shot examples available for ``subject``."""
        return len(self.rows["dev"].get(subject, []))


def _bad(path: Path, reason: str) -> ConfigError:
    return ConfigError(f"{KEY}={path}: {reason}")


def subject_name(raw: str) -> str:
    """Subject as used in task names: lower case, runs of other characters -> ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", raw.strip().lower()).strip("_")


def _check_row(row: object, where: str, path: Path) -> dict:
    """One question, validated; raises a one-line ConfigError naming file and line."""
    if not isinstance(row, dict):
        raise _bad(path, f"{where}: expected a JSON object")
    missing = [k for k in ("question", "subject", "choices", "answer") if k not in row]
    if missing:
        raise _bad(path, f"{where}: missing {', '.join(missing)} (need question, subject, choices, answer)")
    choices, answer = row["choices"], row["answer"]
    if not isinstance(row["question"], str) or not isinstance(row["subject"], str) or not subject_name(row["subject"]):
        raise _bad(path, f"{where}: question and subject must be non-empty strings")
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS) or not all(isinstance(c, str) for c in choices):
        raise _bad(path, f"{where}: choices must be a list of 2 to {len(LETTERS)} strings")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise _bad(path, f"{where}: answer must be the 0-based index of a choice (0..{len(choices) - 1}), got {safe_repr(answer)}")
    return {"question": row["question"], "subject": row["subject"], "choices": choices, "answer": answer}


def _stat(root: Path) -> Tuple[Tuple[str, int, int], ...]:
    """(name, size, mtime_ns) of both files: the cache key of ``load``."""
    out = []
    for split in SPLITS:
        st = (root / f"{split}.jsonl").stat()
        out.append((split, st.st_size, st.st_mtime_ns))
    return tuple(out)


def load(path: str) -> LocalMmlu:
    """Read and validate an MMLU-format folder; one-line ConfigError naming the key on any problem.

    Cached per file size and mtime: the parent validates every cell of a sweep with it.
    """
    root = Path(os.path.expanduser(path)).resolve()
    if not root.is_dir():
        raise _bad(Path(path), "no such folder")
    for split in SPLITS:
        if not (root / f"{split}.jsonl").is_file():
            raise _bad(Path(path), f"missing {split}.jsonl (need dev.jsonl for the few-shot examples and test.jsonl)")
    return _load(root, _stat(root))


@lru_cache(maxsize=8)
def _load(root: Path, stat: tuple) -> LocalMmlu:
    digest = hashlib.sha256(f"v{GENERATOR_VERSION}".encode())
    rows: Dict[str, Dict[str, List[dict]]] = {}
    names: Dict[str, str] = {}  # task-safe name -> raw subject, to catch two subjects that collide
    for split in SPLITS:
        file = root / f"{split}.jsonl"
        data = file.read_bytes()
        digest.update(split.encode() + b"\0" + data + b"\0")
        by_subject: Dict[str, List[dict]] = {}
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file.name} line {number}"
            try:
                row = _check_row(json.loads(line), where, root)
            except json.JSONDecodeError as exc:
                raise _bad(root, f"{where}: not JSON ({exc.msg})") from None
            name = subject_name(row["subject"])
            if names.setdefault(name, row["subject"]) != row["subject"]:
                raise _bad(root, f"{where}: subjects {safe_repr(names[name])} and {safe_repr(row['subject'])} map to the same task name {name}")
            by_subject.setdefault(name, []).append(row)
        rows[split] = by_subject
    subjects = tuple(sorted(rows["test"]))
    if not subjects:
        raise _bad(root, "test.jsonl has no questions")
    for subject in subjects:
        counts = {len(r["choices"]) for r in rows["test"][subject] + rows["dev"].get(subject, [])}
        if len(counts) > 1:  # one choice list per task: lm-eval scores the same letters for every question
            raise _bad(root, f"subject {subject} mixes questions with {' and '.join(map(str, sorted(counts)))} choices")
    return LocalMmlu(root=root, fingerprint=digest.hexdigest()[:12], subjects=subjects, rows=rows)


def check_shots(local: LocalMmlu, num_fewshot: int) -> None:
    """Every scored subject needs ``num_fewshot`` dev questions (MMLU's first_n sampler takes them in order)."""
    short = [f"{s} ({local.dev_count(s)})" for s in local.subjects if local.dev_count(s) < num_fewshot]
    if short:
        raise _bad(
            local.root,
            f"eval.lm_eval.num_fewshot={num_fewshot} but dev.jsonl has fewer questions for {', '.join(short[:5])}"
            + (f" and {len(short) - 5} more subjects" if len(short) > 5 else ""),
        )


def _prompt(n_choices: int) -> str:
    """lm-eval's MMLU prompt, generalised to n choices (identical text for 4)."""
    lines = "".join(f"\\n{LETTERS[i]}. {{{{choices[{i}]}}}}" for i in range(n_choices))
    return f'"{{{{question.strip()}}}}{lines}\\nAnswer:"'


def _task_yaml(local: LocalMmlu, subject: str, data_dir: Path) -> str:
    """One subject as an lm-eval task: the fields of lm-eval's mmlu/default template."""
    n_choices = len(local.rows["test"][subject][0]["choices"])
    files = {"test": str(data_dir / f"{subject}_test.jsonl")}
    has_dev = local.dev_count(subject) > 0
    if has_dev:
        files["dev"] = str(data_dir / f"{subject}_dev.jsonl")
    description = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    lines = [
        f"task: {TASK_PREFIX}{subject}",
        f"task_alias: {subject}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        *[f"    {split}: {json.dumps(file)}" for split, file in files.items()],
        "test_split: test",
        *(["fewshot_split: dev", "fewshot_config:", "  sampler: first_n"] if has_dev else []),
        "output_type: multiple_choice",
        f"description: {json.dumps(description)}",
        f"doc_to_text: {_prompt(n_choices)}",
        f"doc_to_choice: {json.dumps(list(LETTERS[:n_choices]))}",
        "doc_to_target: answer",
        "metric_list:",
        "  - metric: acc",
        "    aggregation: mean",
        "    higher_is_better: true",
        "metadata:",
        f"  version: {GENERATOR_VERSION}.0",
        f"  source: {json.dumps(str(local.root))}",
    ]
    return "\n".join(lines) + "\n"


def _group_yaml(local: LocalMmlu) -> str:
    """The ``mmlu`` group: accuracy over all questions (weight_by_size, as lm-eval's mmlu)."""
    tasks = "".join(f"\n  - {TASK_PREFIX}{s}" for s in local.subjects)
    return (
        f"group: {GROUP}\ntask:{tasks}\naggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\n"
        f"metadata:\n  version: {GENERATOR_VERSION}\n"
    )


def task_folder(local: LocalMmlu, cache_dir: Path) -> Path:
    """The generated lm-eval task folder (``include_path``) for ``local``, written once into the cache.

    Concurrent workers each build a private staging folder and rename it into place; the
    first rename wins and the others discard theirs, so readers never see a partial folder.
    """
    target = Path(cache_dir).expanduser() / "lm_eval_tasks" / f"mmlu-local-{local.fingerprint}"
    if (target / f"_{GROUP}.yaml").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(f".{target.name}.", target.parent)  # not mkdtemp's 0700: a shared cache entry
    try:
        data_dir = target / "data"  # absolute paths in the YAML point at the final location
        (staging / "data").mkdir()
        for subject in local.subjects:
            for split in SPLITS:
                questions = local.rows[split].get(subject)
                if questions:
                    text = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions)
                    (staging / "data" / f"{subject}_{split}.jsonl").write_text(text, encoding="utf-8")
            (staging / f"{TASK_PREFIX}{subject}.yaml").write_text(_task_yaml(local, subject, data_dir), encoding="utf-8")
        (staging / f"_{GROUP}.yaml").write_text(_group_yaml(local), encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not (target / f"_{GROUP}.yaml").is_file():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
