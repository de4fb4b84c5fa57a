"""Training data: read any common format, validate, filter, split, and tokenize for training.

The internal form of an example is a conversation: a list of ``{"role", "content"}``
turns with roles system, user and assistant.

- ``load``: files, folders and hub datasets -> records with locations; ``check_source``
  (the parent's pure-Python validation before any worker starts).
- ``formats``: detect a record's format, normalise it to a conversation.
- ``validate``: turn checks, reason codes and the ``data.on_error`` policy.
- ``filters``: length and placeholder filters, exact duplicates, PII scrubbing.
- ``dedup``: near-duplicate clusters (TF-IDF + MinHash-LSH, or sentence embeddings).
- ``split``: train/validation/test by seed, cluster by cluster.
- ``tokenize``: chat template rendering and assistant-only loss masks.
- ``cache``: the tokenized-data cache shared by cells.
- ``prepare``: the pipeline in order (``prepare_data``); ``__main__``: ``python -m harness.data check``.

Only ``load``, ``formats`` and ``validate`` may be imported by the parent process.
"""
