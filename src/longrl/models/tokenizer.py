"""The embedded default tokenizer: byte-level BPE trained on the synthetic corpus.

Built exactly as Qwen2's tokenizer is (NFC normalizer, Qwen2's pre-tokenizer split pattern,
byte-level BPE without unknown token), so a saved folder loads back through plain
`AutoTokenizer` as `Qwen2Tokenizer` with identical ids. Special tokens: `<|endoftext|>`
(padding), `<|im_start|>`, `<|im_end|>` (end of turn, the eos), plus `<think>` and `</think>`
as ordinary added tokens (kept when decoding with skip_special_tokens).

    tokenizer = train_tokenizer(corpus_texts(600, seed=1234), vocab_size=2048)   # corpus: longrl.data.synthetic.corpus
    tokenizer.save_pretrained("my-tokenizer")
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    trainers,
)
from tokenizers.models import BPE
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
SPLIT_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
DEFAULT_TOKENIZER_DIR = "tokenizer"  # under longrl/assets


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train byte-level BPE on `texts`; returns a transformers tokenizer with the chat template."""

    tok = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2,  # room for the two think tokens
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(THINK_OPEN, special=False, normalized=False), AddedToken(THINK_CLOSE, special=False, normalized=False)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, chat_template=CHAT_TEMPLATE)


def save_tokenizer(tokenizer, path: str | Path) -> None:
    """`save_pretrained`, recording Qwen2Tokenizer as the class (what AutoTokenizer would pick anyway)."""

    tokenizer.save_pretrained(str(path))
    config_path = Path(path) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def assets_dir() -> Path:
    return Path(str(resources.files("longrl") / "assets"))


@functools.lru_cache(maxsize=1)
def load_default_tokenizer():
    """The tokenizer shipped with longrl (also the tiny base model's)."""

    path = assets_dir() / DEFAULT_TOKENIZER_DIR
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"the default tokenizer is missing from {path}; rebuild it with `longrl model tokenizer`")
    return AutoTokenizer.from_pretrained(str(path))
