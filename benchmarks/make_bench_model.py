#!/usr/bin/env python3
"""A bigger random-weight model for benchmarks, with the quick start's tokenizer (so the
quick start's data fits it): the example's config with other sizes, made by transformers.

    .venv/bin/python benchmarks/make_bench_model.py OUT [--from examples/tiny/model]
        [--hidden 512] [--layers 6] [--intermediate 1536] [--heads 8] [--kv-heads 4]
"""
import argparse
import json
import os
import shutil

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--from", dest="source", default="examples/tiny/model")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--intermediate", type=int, default=1536)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    args = ap.parse_args()
    with open(os.path.join(args.source, "config.json")) as f:
        config = json.load(f)
    config.update(hidden_size=args.hidden, num_hidden_layers=args.layers,
                  intermediate_size=args.intermediate, num_attention_heads=args.heads,
                  num_key_value_heads=args.kv_heads, head_dim=args.hidden // args.heads,
                  layer_types=["full_attention"] * args.layers)
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**config))
    model.save_pretrained(args.out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(args.source, name)):
            shutil.copy(os.path.join(args.source, name), args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {n / 1e6:.1f} M parameters, hidden {args.hidden}, {args.layers} layers")


if __name__ == "__main__":
    main()
