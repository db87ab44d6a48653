"""`llamaops tokenizer`: the Llama 3 tokenizer from the command line."""
import json
from typing import Annotated

import typer

from .presets import AsJson

app = typer.Typer(help="Encode and decode with the Llama 3 tokenizer.", no_args_is_help=True)


@app.command("encode")
def encode(
    text: Annotated[str, typer.Argument(help="Text to encode.")],
    bos: Annotated[bool, typer.Option("--bos", help="Prepend <|begin_of_text|>.")] = False,
    eos: Annotated[bool, typer.Option("--eos", help="Append <|end_of_text|>.")] = False,
    as_json: AsJson = False,
) -> None:
    """Print the token ids of TEXT, space-separated."""
    from llamaops.platform.tokenizer import load_tokenizer

    ids = load_tokenizer().encode(text, bos=bos, eos=eos)
    typer.echo(json.dumps(ids) if as_json else " ".join(map(str, ids)))


class TokenIdError(ValueError):
    """A token id the tokenizer does not have."""


@app.command("decode")
def decode(
    ids: Annotated[list[int], typer.Argument(help="Token ids.")],
    as_json: AsJson = False,
) -> None:
    """Print the text of token IDS."""
    from llamaops.platform.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    bad = [i for i in ids if not 0 <= i < tokenizer.vocab_size]
    if bad:
        raise TokenIdError(f"token id {bad[0]} is not in the vocabulary [0, {tokenizer.vocab_size})")
    text = tokenizer.decode(ids)
    typer.echo(json.dumps(text) if as_json else text)
