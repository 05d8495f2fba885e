"""The end of an assistant turn comes from the tokenizer's own chat template, whatever the family."""

from __future__ import annotations

import copy

from longrl.engine.generate import stop_token_ids
from longrl.models.chat import end_of_turn_id, turn_stop_ids
from longrl.sft.packing import encode_example

LLAMA3 = ("{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


def with_template(tokenizer, template: str, eos: str, extra: list[str] = ()):
    other = copy.deepcopy(tokenizer)
    if extra:
        other.add_special_tokens({"additional_special_tokens": list(extra)})
    other.chat_template = template
    other.eos_token = eos
    return other


def test_the_template_names_the_end_of_turn(tokenizer):
    assert end_of_turn_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id
    # eos is another token (a base model's <|endoftext|>): the template's <|im_end|> still ends the turn
    chatml = with_template(tokenizer, tokenizer.chat_template, "<|endoftext|>")
    im_end, text_end = chatml.convert_tokens_to_ids("<|im_end|>"), chatml.convert_tokens_to_ids("<|endoftext|>")
    assert end_of_turn_id(chatml) == im_end
    assert stop_token_ids(chatml) == turn_stop_ids(chatml) == tuple(sorted({im_end, text_end}))
    # a Llama-3-style template: no <|im_end|> anywhere, <|eot_id|> closes the reply
    llama = with_template(tokenizer, LLAMA3, "<|endoftext|>", ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    eot = llama.convert_tokens_to_ids("<|eot_id|>")
    assert end_of_turn_id(llama) == eot
    assert stop_token_ids(llama) == tuple(sorted({eot, text_end}))


def test_without_a_template_or_a_closing_token_the_eos_ends_the_turn(tokenizer):
    bare = with_template(tokenizer, "{% for m in messages %}{{ m['content'] }}{% endfor %}", "<|im_end|>")
    assert end_of_turn_id(bare) == bare.eos_token_id
    raising = with_template(tokenizer, "{{ raise_exception('no assistant turns') }}", "<|im_end|>")
    assert end_of_turn_id(raising) == raising.eos_token_id


class _Config:
    eos_token_id = [7, 9]


class _Model:
    generation_config = _Config()


def test_the_generation_config_adds_its_eos_ids(tokenizer):
    assert stop_token_ids(tokenizer, _Model()) == tuple(sorted({7, 9, tokenizer.eos_token_id}))


def test_sft_replies_end_with_the_templates_end_of_turn(tokenizer, samples):
    chatml = with_template(tokenizer, tokenizer.chat_template, "<|endoftext|>")
    example = encode_example(chatml, samples[1])
    assert example.ids[-1] == chatml.convert_tokens_to_ids("<|im_end|>")       # what rollouts stop at, not the eos
    assert chatml.decode(example.ids[example.n_prompt:]) == samples[1].trace + "<|im_end|>"
