"""Near-duplicate clusters by cosine similarity of prompt vectors, without an all-pairs loop.

Prompt = the user turns of a conversation (system prompts are left out: a shared system
prompt says nothing about whether two examples are the same). Vectors are local TF-IDF
over word unigrams and bigrams (sublinear tf, smoothed idf, L2-normalised), or a
sentence-embedding model's mean-pooled output when ``data.filters.embedder`` names one.

Candidate pairs come from MinHash-LSH over each prompt's informative features (those in
at most 1 % of prompts: near-duplicates share them, unrelated prompts rarely do), 32
bands of 4 rows, so a pair with Jaccard 0.6 is a candidate with probability 0.99 and
one with 0.1 with probability 0.003. Every candidate is then checked with the exact
cosine; pairs above the threshold are joined into clusters (connected components).
Small sets skip LSH and check every pair exactly, blockwise. numpy + scipy only.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from harness.data.filters import WORD
from harness.data.validate import Conversation
from harness.errors import DataError

MAX_PROMPT_WORDS = 512
"""Words+punctuation of a prompt that are vectorised (bounds the cost of very long prompts)."""
EXACT_BELOW = 3000
"""Below this many prompts every pair is compared exactly (cheaper than hashing)."""
BANDS, ROWS = 32, 4
INFORMATIVE_DF = 0.01
"""Features in at most this share of prompts (and at least 5) drive candidate generation."""
BIG_BUCKET = 32
"""LSH buckets larger than this contribute a star plus a chain of pairs, not all pairs."""
PAIR_CHUNK = 200_000
BLOCK_ROWS = 1024
SEED = 0x5EED


def prompt_text(conversation: Conversation) -> str:
    """The text a conversation is compared by: its user turns."""
    return "\n".join(turn["content"] for turn in conversation if turn["role"] == "user")


def tfidf_vectors(texts: List[str]) -> Any:
    """L2-normalised TF-IDF rows (scipy CSR) over word unigrams and bigrams of each text."""
    from scipy import sparse

    vocab: dict = {}
    ids: List[int] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    for row, text in enumerate(texts):
        words = WORD.findall(text.lower())[:MAX_PROMPT_WORDS]
        ids.extend([vocab.setdefault(word, len(vocab)) for word in words])
        lengths[row] = len(words)
    ids_arr = np.asarray(ids, dtype=np.int64)
    rows = np.repeat(np.arange(len(texts)), lengths)
    same_doc = rows[1:] == rows[:-1]
    bigrams = len(vocab) + ids_arr[:-1][same_doc] * len(vocab) + ids_arr[1:][same_doc]
    keys = np.concatenate([ids_arr, bigrams])
    key_rows = np.concatenate([rows, rows[:-1][same_doc]])
    _, columns = np.unique(keys, return_inverse=True)
    matrix = sparse.csr_matrix(
        (np.ones(len(keys), dtype=np.float32), (key_rows, columns.ravel())),
        shape=(len(texts), int(columns.max()) + 1 if len(columns) else 1),
    )
    matrix.sum_duplicates()
    matrix.data = 1.0 + np.log(matrix.data)
    df = np.bincount(matrix.indices, minlength=matrix.shape[1])
    idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
    matrix.data *= idf[matrix.indices].astype(np.float32)
    return _normalise_rows(matrix)


def _normalise_rows(matrix: Any) -> Any:
    """Rows scaled to unit length (empty rows stay zero)."""
    from scipy import sparse

    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ matrix, dtype=np.float32)


def minhash_signatures(matrix: Any) -> Tuple[np.ndarray, np.ndarray]:
    """(rows that have features, their BANDS*ROWS MinHash values) over informative features."""
    count = matrix.shape[0]
    df = np.bincount(matrix.indices, minlength=matrix.shape[1])
    row_of = np.repeat(np.arange(count), np.diff(matrix.indptr))
    rare = df[matrix.indices] <= max(5, int(INFORMATIVE_DF * count))
    # a prompt made only of common words is hashed on all of its features instead
    keep = rare | (np.bincount(row_of[rare], minlength=count)[row_of] == 0)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=count))])
    has = np.flatnonzero(np.diff(indptr) > 0)
    rng = np.random.default_rng(SEED)
    # (a * x + b) mod 2**32 with odd a permutes 32-bit feature ids: one cheap permutation per hash
    a = rng.integers(1, 2**32, size=BANDS * ROWS, dtype=np.uint32) | np.uint32(1)
    b = rng.integers(0, 2**32, size=BANDS * ROWS, dtype=np.uint32)
    signatures = np.empty((len(has), BANDS * ROWS), dtype=np.uint32)
    starts = indptr[has]
    cols = matrix.indices[keep].astype(np.uint32)
    for lo in range(0, len(has), 2048):  # chunks of prompts keep the (features x hashes) table small
        hi = min(lo + 2048, len(has))
        begin, end = starts[lo], indptr[has[hi - 1] + 1]
        hashed = a[:, None] * cols[None, begin:end] + b[:, None]  # hashes x features: contiguous rows to reduce
        signatures[lo:hi] = np.minimum.reduceat(hashed, starts[lo:hi] - begin, axis=1).T
    return has, signatures


def _bucket_pairs(members: np.ndarray, rng: np.random.Generator) -> List[np.ndarray]:
    """Pairs to check in one LSH bucket: all of them, or a star and a chain for a big bucket."""
    if len(members) <= BIG_BUCKET:
        left, right = np.triu_indices(len(members), k=1)
        return [np.stack([members[left], members[right]], axis=1)]
    shuffled = rng.permutation(members)
    star = np.stack([np.full(len(shuffled) - 1, shuffled[0]), shuffled[1:]], axis=1)
    chain = np.stack([shuffled[1:-1], shuffled[2:]], axis=1)
    return [star, chain]


def lsh_candidates(matrix: Any) -> np.ndarray:
    """Candidate pairs (i < j) of prompts that share at least one LSH band."""
    has, signatures = minhash_signatures(matrix)
    rng = np.random.default_rng(SEED)
    mix = rng.integers(1, 2**63, size=ROWS, dtype=np.uint64) | np.uint64(1)
    found: List[np.ndarray] = [np.empty((0, 2), dtype=np.int64)]
    for band in range(BANDS):
        block = signatures[:, band * ROWS : (band + 1) * ROWS].astype(np.uint64)
        keys = (block * mix[None, :]).sum(axis=1, dtype=np.uint64) ^ (block[:, 0] << np.uint64(32))
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.concatenate([[True], np.diff(keys[order]) != 0]))
        sizes = np.diff(np.append(starts, len(order)))
        pair_starts = starts[sizes == 2]  # most buckets are one near-duplicate pair: no Python loop for those
        found.append(np.stack([has[order[pair_starts]], has[order[pair_starts + 1]]], axis=1))
        for start, size in zip(starts[sizes > 2], sizes[sizes > 2]):
            found.extend(_bucket_pairs(has[order[start : start + size]], rng))
    pairs = np.concatenate(found).astype(np.int64)
    pairs.sort(axis=1)
    return np.unique(pairs, axis=0)


def _cosines(vectors: Any, pairs: np.ndarray) -> np.ndarray:
    """Exact cosine of each pair (rows are unit length)."""
    out = np.empty(len(pairs), dtype=np.float32)
    for lo in range(0, len(pairs), PAIR_CHUNK):
        left, right = pairs[lo : lo + PAIR_CHUNK, 0], pairs[lo : lo + PAIR_CHUNK, 1]
        if isinstance(vectors, np.ndarray):
            out[lo : lo + len(left)] = np.einsum("ij,ij->i", vectors[left], vectors[right])
        else:
            out[lo : lo + len(left)] = np.asarray(vectors[left].multiply(vectors[right]).sum(axis=1)).ravel()
    return out


def exact_pairs(vectors: Any, threshold: float) -> np.ndarray:
    """Every pair (i < j) above the threshold, by blockwise products (for small sets and embeddings)."""
    found = [np.empty((0, 2), dtype=np.int64)]
    for lo in range(0, vectors.shape[0], BLOCK_ROWS):
        block = vectors[lo : lo + BLOCK_ROWS] @ vectors.T
        if not isinstance(block, np.ndarray):
            block = block.toarray()
        rows, cols = np.nonzero(block > threshold)
        rows = rows + lo
        keep = cols > rows
        found.append(np.stack([rows[keep], cols[keep]], axis=1))
    return np.concatenate(found).astype(np.int64)


def similar_pairs(vectors: Any, threshold: float, exact_below: int = EXACT_BELOW) -> np.ndarray:
    """Pairs (i < j) whose cosine exceeds ``threshold``: exact for small or dense sets, else LSH + check."""
    if isinstance(vectors, np.ndarray) or vectors.shape[0] < exact_below:
        return exact_pairs(vectors, threshold)
    candidates = lsh_candidates(vectors)
    return candidates[_cosines(vectors, candidates) > threshold]


def clusters(count: int, pairs: np.ndarray) -> np.ndarray:
    """Cluster label per item: connected components of the similar-pair graph."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    graph = sparse.coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def embed(texts: List[str], model_name: str, batch_size: int = 64) -> np.ndarray:
    """Unit-length mean-pooled sentence embeddings from a transformers model (worker only)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModel.from_pretrained(model_name).eval()
    except (OSError, ValueError) as exc:  # not found / not reachable / not a valid hub id
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"data.filters.embedder={model_name}: cannot load the embedding model ({reason[:160]})"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = []
    with torch.no_grad():
        for lo in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[lo : lo + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
    vectors = np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


def near_duplicate_clusters(
    conversations: List[Conversation], threshold: float, embedder: Optional[str] = None
) -> np.ndarray:
    """Cluster label per conversation; conversations in one cluster are near-duplicates (chained)."""
    if not conversations:
        return np.zeros(0, dtype=np.int64)
    texts = [prompt_text(conversation) for conversation in conversations]
    vectors = embed(texts, embedder) if embedder else tfidf_vectors(texts)
    return clusters(len(texts), similar_pairs(vectors, threshold))
