"""Reference chat renderings for Loom's chat template tests.

    chat_reference.py QWEN3_TOKENIZER_DIR OUT_JSON

Writes a list of conversations, each with
  qwen:    transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=g)
           with the Qwen3 tokenizer_config.json's template, and the ids of that text
           (add_special_tokens=False);
  llama3:  the Meta-Llama-3-Instruct template rendered with Jinja2 the way transformers
           does (sandboxed, trim_blocks, lstrip_blocks), bos_token "<|begin_of_text|>".
With QWEN3_TOKENIZER_DIR "-" only the llama3 renderings are written. Offline.
"""

import json
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def conversations():
    s = {"role": "system", "content": "You are a helpful assistant."}
    return [
        [s, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"}],
        [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": "6."},
        ],
        [
            s,
            {"role": "user", "content": "Tell me a joke."},
            {"role": "assistant", "content": "Why did the GPU cross the bus? To get to the other slot."},
            {"role": "user", "content": "Another one, please."},
        ],
        [
            {"role": "user", "content": "Think first."},
            {"role": "assistant", "content": "<think>\nLet me see.\n</think>\n\nThe answer is 42."},
            {"role": "user", "content": "Again."},
            {"role": "assistant", "content": "<think>\nStill thinking\n\n</think>\n\n\nStill 42."},
        ],
        [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A", "reasoning_content": "\nbecause\n"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2", "reasoning_content": "reasoning two"},
        ],
        [
            s,
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "one"},
            {"role": "system", "content": "Now answer in French."},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": "deux"},
        ],
        [
            {"role": "user", "content": "call the tool"},
            {"role": "assistant", "content": "calling"},
            {"role": "user", "content": "<tool_response>\n{\"ok\": true}\n</tool_response>"},
            {"role": "assistant", "content": "The tool said ok."},
        ],
        [
            {"role": "system", "content": "  padded system \n"},
            {"role": "user", "content": "\n\n  leading and trailing whitespace \t\n"},
            {"role": "assistant", "content": "\n  answer with spaces  \n\n"},
        ],
        [
            {"role": "user", "content": "你好，世界！こんにちは 😀 e\u0301 \u00e9"},
            {"role": "assistant", "content": "中文回答 👍🏽 and café"},
        ],
        [{"role": "user", "content": "only a question"}],
        [
            {"role": "user", "content": "empty answer?"},
            {"role": "assistant", "content": ""},
        ],
        [
            {"role": "user", "content": "code"},
            {"role": "assistant", "content": "```python\ndef f(x):\n    return x * 2\n```\n"},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": "<think></think>You're welcome!"},
        ],
    ]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    qwen_dir, out_path = sys.argv[1], sys.argv[2]
    tok = None
    if qwen_dir != "-":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(qwen_dir)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    llama = env.from_string(LLAMA3_TEMPLATE)
    out = []
    for messages in conversations():
        for gen in (False, True):
            case = {"messages": messages, "add_generation_prompt": gen}
            case["llama3"] = llama.render(
                messages=messages, add_generation_prompt=gen, bos_token="<|begin_of_text|>"
            )
            if tok is not None:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
                case["qwen"] = text
                case["qwen_ids"] = tok(text, add_special_tokens=False)["input_ids"]
            out.append(case)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"cases": out}, f, ensure_ascii=True)
    print(f"{len(out)} chat cases -> {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
