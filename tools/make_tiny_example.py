#!/usr/bin/env python3
"""Builds the quick start's small example from scratch, without any download:

  examples/tiny/model/   a tiny Qwen3-architecture model with random weights (transformers)
                         and a byte-level BPE tokenizer trained here (tokenizers), in the
                         Hugging Face folder layout Loom reads
  examples/tiny/train.jsonl, eval.jsonl
                         alpaca-format samples of a few small, learnable tasks
  examples/tiny/compare.jsonl
                         two eval prompts with their answers, for train.eval_prompts and
                         `trainer compare` (the before/after report)

Idempotent: does nothing if the example is already complete.
"""
import argparse
import json
import os
import random
import shutil
import sys

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
ANIMALS = ["cat", "dog", "horse", "bird", "fish", "mouse", "lion", "tiger", "bear", "wolf"]
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def make_samples(n, rng):
    samples = []
    for _ in range(n):
        kind = rng.randrange(4)
        if kind == 0:
            a, b = rng.randrange(100), rng.randrange(100)
            samples.append({"instruction": f"Add {a} and {b}.", "output": f"{a} + {b} = {a + b}"})
        elif kind == 1:
            word = rng.choice(ANIMALS)
            samples.append({"instruction": "Spell the word backwards.", "input": word,
                            "output": word[::-1]})
        elif kind == 2:
            color = rng.choice(COLORS)
            k = rng.randrange(2, 5)
            samples.append({"instruction": f"Repeat the color {color} {k} times.",
                            "output": " ".join([color] * k)})
        else:
            items = rng.sample(ANIMALS, 3)
            samples.append({"instruction": "Sort these animals alphabetically.",
                            "input": ", ".join(items), "output": ", ".join(sorted(items))})
    return samples


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="examples/tiny")
    ap.add_argument("--train-samples", type=int, default=3000)
    ap.add_argument("--eval-samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    stamp = os.path.join(args.out, ".complete-2")  # bumped when the example's files change
    if os.path.exists(stamp):
        print(f"[example] {args.out} is ready", file=sys.stderr)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    rng = random.Random(args.seed)
    train = make_samples(args.train_samples, rng)
    evals = make_samples(args.eval_samples, rng)
    tmp = args.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "model"))
    # One prompt of two different tasks, with the reference answer as "output".
    compare = [next(r for r in evals if r["instruction"].startswith("Add")),
               next(r for r in evals if r["instruction"].startswith("Repeat"))]
    for name, rows in (("train.jsonl", train), ("eval.jsonl", evals), ("compare.jsonl", compare)):
        with open(os.path.join(tmp, name), "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    # A byte-level BPE tokenizer with Qwen's normalizer and pre-tokenizer.
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    corpus = [f"{r['instruction']}\n{r.get('input', '')}\n{r['output']}" for r in train]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    fast.save_pretrained(os.path.join(tmp, "model"))

    torch.manual_seed(args.seed)
    config = Qwen3Config(
        vocab_size=len(fast), hidden_size=64, intermediate_size=176, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
        rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, dtype="float32")
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(os.path.join(tmp, "model"), safe_serialization=True)
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(tmp, args.out)
    open(stamp, "w").close()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[example] wrote {args.out}: Qwen3 model with {n_params:,} parameters, vocab {len(fast)}, "
          f"{len(train)} train / {len(evals)} eval samples", file=sys.stderr)


if __name__ == "__main__":
    main()
