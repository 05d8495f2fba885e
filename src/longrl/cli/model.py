"""`longrl model tokenizer|tiny`: build the embedded default's tokenizer or a random tiny model."""

from __future__ import annotations

import argparse

from longrl.cli.args import add_config_arguments, load_config_from_args


def register(sub) -> None:
    model = sub.add_parser("model", help="build the embedded default's tokenizer or a random tiny model",
                           description="Build the embedded default offline: its byte-level BPE tokenizer, or a "
                                       "random-init tiny Qwen2 model (sized by pretrain.architecture).")
    model.set_defaults(handler=lambda args: (model.print_help(), 2)[1])
    actions = model.add_subparsers(dest="action", metavar="ACTION")

    p = actions.add_parser("tokenizer", help="train the byte-level BPE tokenizer on the synthetic corpus")
    add_config_arguments(p, example="pretrain.tokenizer.vocab_size=4096")
    p.set_defaults(handler=run_tokenizer)

    p = actions.add_parser("tiny", help="save a random-init tiny Qwen2 model with the default tokenizer")
    add_config_arguments(p, example="pretrain.architecture.hidden_size=128")
    p.set_defaults(handler=run_tiny)


def run_tokenizer(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info
    from longrl.data.synthetic.corpus import corpus_texts
    from longrl.files import atomic_dir
    from longrl.models.tokenizer import save_tokenizer, train_tokenizer

    cfg = load_config_from_args(args).pretrain.tokenizer
    tokenizer = train_tokenizer(corpus_texts(cfg.corpus_samples, cfg.corpus_seed), cfg.vocab_size)
    with atomic_dir(args.out) as tmp:
        save_tokenizer(tokenizer, tmp)
    info(f"wrote a {len(tokenizer)}-token tokenizer to {args.out}")
    return 0


def run_tiny(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info
    from longrl.files import atomic_dir
    from longrl.models.tiny import build_tiny_model, save_pretrained
    from longrl.models.tokenizer import load_default_tokenizer

    cfg = load_config_from_args(args)
    tokenizer = load_default_tokenizer()
    model = build_tiny_model(cfg.pretrain.architecture, tokenizer)
    with atomic_dir(args.out) as tmp:
        save_pretrained(model, tokenizer, tmp)
    n = sum(p.numel() for p in model.parameters())
    info(f"wrote a random-init tiny Qwen2 model ({n / 1e6:.2f}M parameters) to {args.out}")
    return 0
