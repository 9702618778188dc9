"""Tiny Hugging Face decoder checkpoints with random weights, made at test time (no hub).

    python make_tiny_model.py OUT_DIR VARIANT [--seed N] [--dtype float32|bfloat16]

VARIANTs: qwen3 (head_dim 24 != hidden/heads), qwen3_tied, qwen2, llama, llama_rope3
(Llama 3 rope scaling), llama_hd (head_dim 32 != hidden/heads, tied); qwen3_bnb, qwen2_bnb,
llama_bnb: every projection's output width divisible by 32 and input width by 64 (intermediate
128, head_dim 16), which bitsandbytes' CPU 4-bit path needs.
Weights are larger than transformers' init (std 0.1, norms around 1, biases non-zero) so
that a wrong op shows in the logits instead of drowning in near-uniform attention.
"""

import argparse
import sys

import torch

VOCAB = 300
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
              max_position_embeddings=256)


BNB = dict(COMMON, intermediate_size=128)


def make_config(variant):
    import transformers as tf
    if variant == "qwen3_bnb":
        return tf.Qwen3Config(**BNB, head_dim=16, tie_word_embeddings=False)
    if variant == "qwen2_bnb":
        return tf.Qwen2Config(**BNB, tie_word_embeddings=True)
    if variant == "llama_bnb":
        return tf.LlamaConfig(**BNB, head_dim=16, tie_word_embeddings=False)
    if variant == "qwen3":
        return tf.Qwen3Config(**COMMON, head_dim=24, tie_word_embeddings=False,
                              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    if variant == "qwen3_tied":
        return tf.Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=True)
    if variant == "qwen2":
        return tf.Qwen2Config(**COMMON, tie_word_embeddings=False)
    if variant == "llama":
        return tf.LlamaConfig(**COMMON, tie_word_embeddings=False,
                              rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    if variant == "llama_rope3":
        return tf.LlamaConfig(**COMMON, tie_word_embeddings=False,
                              rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                               "factor": 8.0, "low_freq_factor": 1.0,
                                               "high_freq_factor": 4.0,
                                               "original_max_position_embeddings": 64})
    if variant == "llama_hd":
        return tf.LlamaConfig(**COMMON, head_dim=32, tie_word_embeddings=True)
    raise SystemExit(f"unknown variant {variant}")


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.2 * noise)
            else:
                p.copy_(0.1 * noise)


def make_model(variant, out_dir, seed=0, dtype="float32"):
    import transformers as tf
    config = make_config(variant)
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config)
    randomize(model, seed)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out_dir)
    return model


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("variant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args(argv)
    make_model(a.variant, a.out_dir, a.seed, a.dtype)


if __name__ == "__main__":
    main(sys.argv[1:])
