"""``data``: where the chat records come from, how they are filtered, split and tokenized."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from harness.config.names import (
    one_of,
    path_segment,
    require,
)
from harness.errors import ConfigError

DATA_FORMATS = ("auto", "messages", "sharegpt", "alpaca", "prompt_completion", "chatml")


@dataclass
class DataColumnsConfig:
    """Which of your fields holds each thing the formats read; None = the format's own name.

    ``data.columns={instruction:question,output:answer}`` reads Alpaca-style records whose
    fields are called question and answer; role/content rename the fields inside turns.
    """

    messages: Optional[str] = None
    """Turn list of the messages format."""
    conversations: Optional[str] = None
    """Turn list of the ShareGPT format."""
    instruction: Optional[str] = None
    """Alpaca instruction."""
    input: Optional[str] = None
    """Alpaca optional input (appended to the instruction)."""
    output: Optional[str] = None
    """Alpaca response."""
    prompt: Optional[str] = None
    """Prompt of prompt/completion pairs."""
    completion: Optional[str] = None
    """Completion of prompt/completion pairs."""
    text: Optional[str] = None
    """Raw ChatML text."""
    system: Optional[str] = None
    """Optional system prompt of Alpaca and prompt/completion records."""
    role: Optional[str] = None
    """Role field inside a turn (messages: role; ShareGPT: from)."""
    content: Optional[str] = None
    """Content field inside a turn (messages: content; ShareGPT: value)."""

    def mapping(self) -> Dict[str, str]:
        """harness field -> your field, for the fields that are renamed."""
        return {name: column for name, column in vars(self).items() if column is not None}


@dataclass
class DataFilterConfig:
    """Quality filters applied after validation, before the split; each drop is counted."""

    min_assistant_tokens: int = 10
    """Drop conversations whose assistant turns hold fewer words+punctuation marks than this (0 = off).

    Counted with a regex (``\\w+|[^\\w\\s]``), not the model's tokenizer, so every model of a
    sweep trains on the same examples."""
    placeholders: bool = True
    """Drop conversations whose assistant text is placeholder text ([Insert response here], TODO, lorem ipsum)."""
    placeholder_patterns: Optional[List[str]] = None
    """Case-insensitive regexes that mark placeholder text; None = the built-in list."""
    exact_dedup: bool = True
    """Drop exact duplicate conversations (same turns after case and whitespace folding); keeps the first."""
    near_dedup: bool = True
    """Drop near-duplicates: conversations whose prompt vectors have cosine similarity above the threshold.

    Near-duplicate clusters are always kept on one side of the split, even when this is off."""
    near_dedup_threshold: float = 0.92
    """Cosine similarity above which two prompts are near-duplicates."""
    embedder: Optional[str] = None
    """Sentence-embedding model (hub id or local folder) for prompt vectors; None = local TF-IDF vectoriser."""
    pii_scrub: bool = False
    """Replace e-mail addresses, phone numbers and card numbers with [EMAIL], [PHONE], [CARD]; counts recorded."""

    def __post_init__(self) -> None:
        require(self.min_assistant_tokens >= 0, "data.filters.min_assistant_tokens", self.min_assistant_tokens, "must be >= 0")
        require(
            0.0 < self.near_dedup_threshold <= 1.0, "data.filters.near_dedup_threshold", self.near_dedup_threshold, "must be in (0, 1]"
        )
        for pattern in self.placeholder_patterns or []:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"data.filters.placeholder_patterns={pattern}: not a regular expression ({exc})") from None


@dataclass
class DataConfig:
    """Training data: the bundled chat set, the user's own files, or a hub dataset."""

    name: str = "bundled"
    """Label shown in summaries."""
    path: Optional[str] = None
    """A JSON/JSONL/ChatML-text file or a folder of them; None (and no hub_id) uses the chat set shipped with the harness."""
    format: str = "auto"
    """auto (detected per file from the fields), messages, sharegpt, alpaca, prompt_completion or chatml."""
    hub_id: Optional[str] = None
    """Dataset loaded with ``datasets.load_dataset`` (hub id or a local dataset folder) instead of ``path``."""
    hub_config: Optional[str] = None
    """The dataset's configuration (subset) name, when it has several."""
    hub_split: str = "train"
    """Which split of the hub dataset to read (the harness makes its own train/validation/test split from it)."""
    hub_revision: Optional[str] = None
    """Hub revision (branch, tag or commit) to pin the dataset to; None = the default branch."""
    columns: DataColumnsConfig = field(default_factory=DataColumnsConfig)
    """Field renames, harness name -> your field (``data.columns={instruction:question,output:answer}``)."""
    on_error: str = "fail"
    """fail: stop at the first invalid record (before any model loads); skip: drop invalid records and count them."""
    filters: DataFilterConfig = field(default_factory=DataFilterConfig)
    """Quality filters; see DataFilterConfig."""
    val_fraction: float = 0.1
    """Share of examples in the validation split (held-out loss and perplexity)."""
    test_fraction: float = 0.1
    """Share of examples in the test split (kept for later evaluators; never trained on)."""
    split_seed: int = 1234
    """Picks the train/validation/test split, apart from train.seed, so seed replicates
    (``-m train.seed=1,2,3``) train on the same examples and share one validation set."""
    max_examples: Optional[int] = None
    """Use at most this many training examples, taken deterministically after filtering; None = all."""
    loss_on: str = "assistant"
    """assistant: loss on assistant tokens only; all: loss on the whole sequence."""
    overlong: str = "truncate"
    """Examples longer than train.max_seq_len: truncate (keep the first tokens) or drop."""
    synthetic: bool = False
    """Generate the examples instead of reading a data set (``data=synthetic``): each is exactly ``data.seq_len``
    random token ids from the tokenizer's vocabulary (special tokens left out), every token loss-bearing, drawn from
    data.split_seed. For memory and throughput checks ("batch 4 x 2048 tokens" trains 2048-token rows); its losses
    and perplexities say nothing about quality. format, columns, filters, loss_on and overlong do not apply."""
    seq_len: Optional[int] = None
    """Tokens in every synthetic example (data=synthetic only; conf/data/synthetic.yaml sets train.max_seq_len).
    Never truncated: a value above train.max_seq_len is rejected, since a memory check must train rows of the
    length it asked for, not silently shorter ones."""
    examples: Optional[int] = None
    """Synthetic training examples (data=synthetic only). Validation and test get val_fraction and test_fraction
    of that many more (at least one validation example), so the model trains on exactly this many rows."""

    def __post_init__(self) -> None:
        path_segment("data.name", self.name)
        self._check_synthetic()
        require(self.path is None or self.hub_id is None, "data.hub_id", self.hub_id, "set data.path or data.hub_id, not both")
        if self.path is not None:
            path = os.path.expanduser(self.path)
            require(os.path.exists(path), "data.path", self.path, "no such file or folder")
        one_of("data.format", self.format, DATA_FORMATS)
        one_of("data.on_error", self.on_error, ("fail", "skip"))
        one_of("data.loss_on", self.loss_on, ("assistant", "all"))
        one_of("data.overlong", self.overlong, ("truncate", "drop"))
        require(0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "must be in (0, 1)")
        require(0.0 <= self.test_fraction < 1.0, "data.test_fraction", self.test_fraction, "must be in [0, 1)")
        require(
            self.val_fraction + self.test_fraction < 1.0,
            "data.test_fraction",
            self.test_fraction,
            f"data.val_fraction + data.test_fraction must leave examples to train on (< 1, got {self.val_fraction + self.test_fraction:g})",
        )
        if self.max_examples is not None:
            require(self.max_examples > 0, "data.max_examples", self.max_examples, "must be a positive integer")

    def _check_synthetic(self) -> None:
        """seq_len and examples go with data.synthetic, and a synthetic source reads no file or hub dataset."""
        if not self.synthetic:
            for key in ("seq_len", "examples"):
                value = getattr(self, key)
                require(value is None, f"data.{key}", value, "only applies to generated data: use data=synthetic")
            return
        for key in ("seq_len", "examples"):
            value = getattr(self, key)
            require(isinstance(value, int) and value > 0, f"data.{key}", value, "must be a positive integer with data=synthetic")
        for key in ("path", "hub_id"):
            value = getattr(self, key)
            require(value is None, f"data.{key}", value, "data=synthetic generates its examples; it reads no data set")

    def check_fits(self, max_seq_len: int) -> None:
        """Synthetic rows fit train.max_seq_len (they are never truncated); checked by HarnessConfig."""
        if self.synthetic:
            require(
                self.seq_len <= max_seq_len,
                "data.seq_len",
                self.seq_len,
                f"longer than train.max_seq_len={max_seq_len}; synthetic rows are never truncated: "
                f"set train.max_seq_len={self.seq_len} or more",
            )
