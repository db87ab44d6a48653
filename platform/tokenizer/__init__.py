"""The Llama 3 tokenizer, the Llama 3.1 dialog format, and their Hugging Face export."""
from .chat_format import (
    BUILTIN_TOOLS,
    Message,
    Tool,
    ToolCall,
    ToolDefinition,
    encode_dialog_for_generation,
    encode_dialog_for_training,
    parse_assistant_message,
    render_dialog,
)
from .hf_export import write_hf_tokenizer_files
from .tokenizer import SPECIAL_TOKENS, Tokenizer, load_tokenizer

__all__ = [
    "BUILTIN_TOOLS",
    "Message",
    "SPECIAL_TOKENS",
    "Tokenizer",
    "Tool",
    "ToolCall",
    "ToolDefinition",
    "encode_dialog_for_generation",
    "encode_dialog_for_training",
    "load_tokenizer",
    "parse_assistant_message",
    "render_dialog",
    "write_hf_tokenizer_files",
]
