"""Sequence perplexity is lm-eval's rolling log-likelihood: same numbers as HFLM.loglikelihood_rolling."""

from __future__ import annotations

import json
import math

import pytest

from harness.backends.base import ModelView
from harness.config.eval import PerplexityEvalConfig
from harness.config.model import ModelConfig
from harness.data.prepare import PreparedData
from harness.evaluators.base import EvalContext
from harness.evaluators.perplexity import PerplexityEvaluator, rolling_loglikelihoods
from harness.models.tiny import TOKENIZER_CORPUS, ensure_tiny_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny(cache_dir):
    """The cached tiny llama, its tokenizer, lm-eval's HFLM around them, and some bundled chat texts."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_tiny_model(ModelConfig(), cache_dir)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    lines = TOKENIZER_CORPUS.read_text().splitlines()[:6]
    texts = [tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=False) for line in lines]
    return model, tokenizer, texts, HFLM


def _lm_eval_rolling(hflm, texts):
    from lm_eval.api.instance import Instance

    requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i) for i, t in enumerate(texts)]
    return hflm.loglikelihood_rolling(requests, disable_tqdm=True)


@pytest.mark.parametrize("window", [32, None])  # 32: several rolling windows per text; None: the model's 2048
def test_rolling_loglikelihood_equals_lm_evals(tiny, window):
    model, tokenizer, texts, HFLM = tiny
    hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=window)
    sequences = [hflm.tok_encode(t) for t in texts]
    if window:
        assert max(len(s) for s in sequences) > 2 * window
    ours = rolling_loglikelihoods(ModelView(model, tokenizer, "cpu", "tiny"), sequences, batch_size=3, max_length=window)
    assert ours == pytest.approx(_lm_eval_rolling(hflm, texts), rel=1e-5)


def test_sequence_rows_are_lm_evals_wikitext_metrics(tiny, tmp_path):
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity
    from lm_eval.tasks.wikitext import preprocess_wikitext as wikitext

    model, tokenizer, texts, HFLM = tiny
    hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    ids = [hflm.tok_encode(t) for t in texts]
    assert [tokenizer.decode(s) for s in ids] == texts  # so words and bytes are counted on the same text
    data = PreparedData(train=[], heldout=[{"input_ids": s, "labels": s} for s in ids])
    rows = PerplexityEvaluator(PerplexityEvalConfig(batch_size=4)).evaluate(
        ModelView(model, tokenizer, "cpu", "tiny"), EvalContext(data=data, cell_dir=tmp_path, cache_dir=tmp_path)
    )
    got = {r["metric"]: r["value"] for r in rows}
    lls = _lm_eval_rolling(hflm, texts)
    # lm-eval's wikitext process_results, applied to the same texts
    items = [wikitext.process_results({"page": t}, [ll]) for t, ll in zip(texts, lls)]
    assert got["word_perplexity"] == pytest.approx(weighted_perplexity([i["word_perplexity"] for i in items]), rel=1e-5)
    assert got["byte_perplexity"] == pytest.approx(weighted_perplexity([i["byte_perplexity"] for i in items]), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(bits_per_byte([i["bits_per_byte"] for i in items]), rel=1e-5)
    assert got["seq_perplexity"] == pytest.approx(math.exp(-sum(lls) / sum(map(len, ids))), rel=1e-5)
    assert got["seq_nll"] == pytest.approx(-sum(lls) / sum(map(len, ids)), rel=1e-5)
