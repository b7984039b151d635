"""w2vpipe: the word2vec library behind the pipeline (skip-gram with negative sampling).

Plain functions, one module per concern; no orchestration or tracking in here.
Modules that need TensorFlow import it lazily, so cheap stages stay cheap.
"""

__version__ = "0.1.0"
