"""Tokenization of documents for pretraining.

Each document becomes <|begin_of_text|> text <|end_of_text|>. The shard format already records
where documents start (and training masks attention across them), but the explicit markers
teach the model how a text begins (the same first token it sees at inference) and when a text
is over, which <|end_of_text|> alone signals once documents are packed back to back.
"""
from ..tokenizer import Tokenizer
from .documents import Document
from .report import Removed


def tokenize_documents(documents: list[Document], tokenizer: Tokenizer) -> tuple[list[Document], Removed]:
    for doc in documents:
        doc.tokens = tokenizer.encode(doc.text, bos=True, eos=True)
    return documents, []
