"""Quality filters, PII scrubbing, near-duplicate clusters and the leak-free split."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config.data import DataConfig, DataFilterConfig
from harness.data import dedup
from harness.data.filters import count_words, drop_exact_duplicates, quality_filter, scrub_pii, scrub_text
from harness.data.load import Example
from harness.data.prepare import select_examples
from harness.data.split import split_clusters
from tests.data_synth import synthetic_conversations

pytestmark = pytest.mark.unit
LONG = "This answer is long enough to pass the default minimum length filter easily."


def _ex(prompt, answer=LONG, where="f:1"):
    return Example([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], where)


def test_word_count_counts_words_and_punctuation():
    assert count_words("The capital is Paris.") == 5
    assert count_words("") == 0


def test_min_length_and_placeholders_each_counted():
    examples = [
        _ex("a?", "Too short."),
        _ex("b?", "Sure! [Insert response here] and more words to be long enough."),
        _ex("c?", "TODO: write this answer later, with plenty of words in it."),
        _ex("d?", "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do."),
        _ex("e?"),
    ]
    kept, dropped = quality_filter(examples, DataFilterConfig())
    assert [e.conversation[0]["content"] for e in kept] == ["e?"]
    assert dropped == {"min_assistant_tokens": 1, "placeholder": 3}
    kept, dropped = quality_filter(examples, DataFilterConfig(min_assistant_tokens=0, placeholders=False))
    assert len(kept) == 5 and dropped == {"min_assistant_tokens": 0, "placeholder": 0}


def test_custom_placeholder_patterns():
    kept, dropped = quality_filter([_ex("a?", LONG + " XXX")], DataFilterConfig(placeholder_patterns=["xxx"]))
    assert not kept and dropped["placeholder"] == 1


def test_exact_duplicates_fold_case_and_whitespace():
    kept, dropped = drop_exact_duplicates([_ex("Hello  there?"), _ex("hello there?"), _ex("Other?")])
    assert dropped == 1 and len(kept) == 2


def test_pii_scrubbing_counts_each_kind():
    from collections import Counter

    counts = Counter()
    text = scrub_text(
        "Mail jane.doe@example.com or call +1 415-555-0134; card 4111 1111 1111 1111, not 1234 5678 9012 3456.", counts
    )
    assert text == "Mail [EMAIL] or call [PHONE]; card [CARD], not 1234 5678 9012 3456."
    assert counts == {"email": 1, "phone": 1, "card": 1}
    examples = [_ex("my mail is a@b.org", "Write to c@d.com please, it is fine.")]
    assert scrub_pii(examples) == {"email": 2, "phone": 0, "card": 0}
    assert examples[0].conversation[1]["content"] == "Write to [EMAIL] please, it is fine."


def test_arithmetic_is_not_a_phone_number():
    from collections import Counter

    assert (
        scrub_text("What is 87 + 90? It is 177, and 3 - 66 = -63.", Counter())
        == "What is 87 + 90? It is 177, and 3 - 66 = -63."
    )


def test_near_duplicates_cluster_and_distinct_prompts_do_not():
    convs = [
        _ex("How do I reverse a list in Python quickly and safely?").conversation,
        _ex("How do I reverse a list in Python quickly and safely ?").conversation,
        _ex("how do i reverse a list in python quickly and safely").conversation,
        _ex("What is the boiling point of water at sea level?").conversation,
        _ex("Name three composers of the baroque period.").conversation,
    ]
    labels = dedup.near_duplicate_clusters(convs, 0.92)
    assert labels[0] == labels[1] == labels[2]
    assert len({labels[0], labels[3], labels[4]}) == 3


def test_lsh_finds_what_the_exact_search_finds():
    convs = synthetic_conversations(4000, seed=5, near_dup_rate=0.15)
    vectors = dedup.tfidf_vectors([dedup.prompt_text(c) for c in convs])
    exact = {tuple(p) for p in dedup.exact_pairs(vectors, 0.92).tolist()}
    lsh = {tuple(p) for p in dedup.similar_pairs(vectors, 0.92, exact_below=0).tolist()}
    assert len(exact) > 200
    assert lsh <= exact and len(lsh) >= 0.98 * len(exact)


def test_split_is_deterministic_disjoint_and_keeps_clusters_whole():
    convs = synthetic_conversations(1000, seed=2, near_dup_rate=0.2)
    labels = dedup.near_duplicate_clusters(convs, 0.92)
    assert len(set(labels.tolist())) < 1000  # there are clusters to keep together
    split = split_clusters(convs, labels, 0.1, 0.1, seed=7)
    assert split == split_clusters(convs, labels, 0.1, 0.1, seed=7)
    assert split != split_clusters(convs, labels, 0.1, 0.1, seed=8)
    sides = {}
    for name, indices in split.items():
        for index in indices:
            assert sides.setdefault(int(labels[index]), name) == name  # one side per cluster
    assert sorted(i for ids in split.values() for i in ids) == list(range(1000))
    assert 80 <= len(split["validation"]) <= 120 and 80 <= len(split["test"]) <= 120


def test_split_does_not_depend_on_file_order():
    convs = synthetic_conversations(300, seed=3)
    labels = np.arange(300)
    forward = split_clusters(convs, labels, 0.1, 0.1, seed=1)
    backward = split_clusters(convs[::-1], labels, 0.1, 0.1, seed=1)
    assert {299 - i for i in backward["validation"]} == set(forward["validation"])


def test_too_few_examples_to_split():
    from harness.errors import DataError

    convs = synthetic_conversations(2, seed=3)
    with pytest.raises(DataError, match="need at least 3"):
        split_clusters(convs, np.arange(2), 0.1, 0.1, seed=1)


def test_select_examples_counts_each_stage(tmp_path):
    import json

    path = tmp_path / "d.jsonl"
    rows = [{"messages": c} for c in synthetic_conversations(200, seed=4, near_dup_rate=0.0)]
    rows += rows[:10]  # exact duplicates
    rows.append({"messages": [{"role": "user", "content": "hi?"}, {"role": "assistant", "content": "Short."}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    chosen, stats = select_examples(DataConfig(path=str(path)), seed=42)
    assert stats["records"] == 211 and stats["valid"] == 211
    assert stats["filtered"] == {
        "min_assistant_tokens": 1,
        "placeholder": 0,
        "exact_duplicate": 10,
        "near_duplicate": 0,
    }
    assert stats["kept"] == 200 and sum(len(v) for v in chosen.values()) == 200
    assert stats["split_examples"] == {"train": 160, "validation": 20, "test": 20}
