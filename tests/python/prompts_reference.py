"""Reference generation prompts for Loom's prompts tests.

    prompts_reference.py QWEN3_TOKENIZER_DIR IN_JSON OUT_JSON

IN_JSON is a list of conversations (lists of {role, content}); OUT_JSON gets, for each, the
text of transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
with enable_thinking True and False (Qwen3's template switch). Offline.
"""

import json
import os
import sys


def main():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        conversations = json.load(f)
    out = []
    for messages in conversations:
        out.append({
            thinking: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                    enable_thinking=(thinking == "on"))
            for thinking in ("on", "off")
        })
    with open(sys.argv[3], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
