"""The built-in spam filter (issue 8): a learning classifier and the signals around it.

``tokenizer`` turns a message into tokens, ``classifier`` does the arithmetic,
``dnsbl``/``heuristics`` gather outside and header signals, ``scoring`` weighs
them into a verdict, and ``filter.SpamFilter`` is the pipeline step. Training
(from users' moves into and out of Junk) is postbote/filters/spam_training.py.
"""

from .filter import SpamFilter

__all__ = ["SpamFilter"]
