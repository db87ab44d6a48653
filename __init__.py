"""llamaops: the Llama 3.1 lifecycle (data, pretraining, post-training, evaluation, serving)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llamaops")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
