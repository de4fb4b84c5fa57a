"""Training data: load conversations, validate them, split, and tokenize for training.

The internal form of an example is a conversation: a list of ``{"role", "content"}``
turns with roles system, user and assistant. Loaders turn every input format into that
form; ``prepare`` turns conversations into tokenized train and held-out sets.
"""
