"""Writes the fuzz targets' fixtures and seed corpora (tests/fuzz/fixtures, tests/fuzz/corpus).

    .venv/bin/python tests/fuzz/make_seeds.py [--tokenizers ../shared/tokenizers]

The seeds are small, realistic inputs: tokenizers cut down from the real Qwen3, Qwen2.5 and
Llama 3.1 tokenizer.json files (their normalizer, pre-tokenizer, decoder and added tokens
verbatim; the 256 byte tokens plus the first merges that only use tokens kept), the
repository's example configs, prepare records of every format, chat conversations, and
safetensors / HDF5 token files (the latter need h5py, from the project virtualenv). Without
the real tokenizers the tokenizer seeds fall back to hand-written ones of the same shape.
Files found by fuzzing (crash-*, hang-*) are added by hand and are not touched here.
"""

import argparse
import json
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "corpus")
FIXTURES = os.path.join(ROOT, "fixtures")
REPO = os.path.dirname(os.path.dirname(ROOT))

QWEN_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = QWEN_REGEX.replace(r"\p{N}|", r"\p{N}{1,3}|", 1)
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
              "use_regex": False}

TEXTS = [
    "Hello world! The theory of everything, in 3 sentences.",
    "naïve café — ﬁne\u00a0spaces\u3000and 数字 123456 😀\r\n\ttabs",
    "<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "e\u0301 ﾃｽﾄ Å Ω ﬀ ＡＢＣ",
]


def byte_chars():
    """GPT-2's bytes_to_unicode(): the byte-level character of each byte."""
    direct = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    chars, nxt = [], 256
    for b in range(256):
        if b in direct:
            chars.append(chr(b))
        else:
            chars.append(chr(nxt))
            nxt += 1
    return chars


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def added(tid, content, special=True, normalized=False, **flags):
    return {"id": tid, "content": content, "single_word": flags.get("single_word", False),
            "lstrip": flags.get("lstrip", False), "rstrip": flags.get("rstrip", False),
            "normalized": normalized, "special": special}


def cut_down(real, n_merges, n_added, legacy_merges=False, ascii_only=False):
    """A small tokenizer.json from a real one: bytes (all, or printable ASCII) + first merges."""
    chars = byte_chars()
    keep = range(256) if not ascii_only else list(range(0x21, 0x7F)) + [0x20, 0x0A]
    vocab = {chars[b]: b for b in keep}
    merges = []
    next_id = 256
    for m in real["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = next_id
            next_id += 1
            merges.append(f"{a} {b}" if legacy_merges else [a, b])
            if len(merges) == n_merges:
                break
    model = {k: v for k, v in real["model"].items() if k not in ("vocab", "merges")}
    model["vocab"] = vocab
    model["merges"] = merges
    toks = []
    for t in real["added_tokens"][:n_added]:
        t = dict(t)
        t["id"] = next_id
        next_id += 1
        toks.append(t)
    out = {k: v for k, v in real.items() if k not in ("model", "added_tokens")}
    out["added_tokens"] = toks
    out["model"] = model
    return out


def hand_written(regex, specials, normalizer, ignore_merges=False):
    chars = byte_chars()
    vocab = {chars[b]: b for b in range(256)}
    merges = []
    for a, b in [("t", "h"), ("th", "e"), ("Ġ", "th"), ("Ġth", "e"), ("a", "n"), ("Ġ", "a"),
                 ("e", "r"), ("i", "n"), ("o", "u"), ("Ġ", "w"), ("l", "l"), ("h", "e")]:
        vocab[a + b] = len(vocab)
        merges.append([a, b])
    toks = [added(len(vocab) + i, s, special) for i, (s, special) in enumerate(specials)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": toks,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            BYTE_LEVEL]},
        "post_processor": None, "decoder": BYTE_LEVEL,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": ignore_merges,
                  "vocab": vocab, "merges": merges},
    }


QWEN_SPECIALS = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
                 ("<tool_response>", False), ("</tool_response>", False), ("<think>", False),
                 ("</think>", False)]
LLAMA3_SPECIALS = [("<|begin_of_text|>", True), ("<|end_of_text|>", True),
                   ("<|start_header_id|>", True), ("<|end_header_id|>", True), ("<|eot_id|>", True)]


def load_real(tokenizers, name):
    path = os.path.join(tokenizers, name, "tokenizer.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def tokenizers_and_fixtures(tokenizers):
    qwen3 = load_real(tokenizers, "qwen3")
    qwen25 = load_real(tokenizers, "qwen2_5")
    llama = load_real(tokenizers, "llama3_1")
    qwen_tok = (cut_down(qwen3, 120, 26) if qwen3 else
                hand_written(QWEN_REGEX, QWEN_SPECIALS, {"type": "NFC"}))
    llama_tok = (cut_down(llama, 120, 0) if llama else
                 hand_written(LLAMA3_REGEX, [], None, ignore_merges=True))
    if llama:  # its chat tokens, but not the 250 reserved ones
        ids = len(llama_tok["model"]["vocab"])
        llama_tok["added_tokens"] = [added(ids + i, s) for i, (s, _) in enumerate(LLAMA3_SPECIALS)]

    # Fixtures: the tokenizers the chat and prepare targets run with.
    fx = os.path.join(FIXTURES, "qwen_tokenizer")
    write(os.path.join(fx, "tokenizer.json"), dumps(qwen_tok))
    write(os.path.join(fx, "tokenizer_config.json"),
          dumps({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}))
    fx = os.path.join(FIXTURES, "llama3_tokenizer")
    write(os.path.join(fx, "tokenizer.json"), dumps(llama_tok))
    write(os.path.join(fx, "tokenizer_config.json"),
          dumps({"eos_token": "<|eot_id|>", "bos_token": {"content": "<|begin_of_text|>"}}))

    # Seeds: tokenizer.json NUL text [NUL tokenizer_config.json], each small.
    d = os.path.join(CORPUS, "tokenizer")
    small = []
    if qwen3:
        small.append(("qwen3", cut_down(qwen3, 40, 26, ascii_only=True)))
    if qwen25:
        small.append(("qwen2_5_legacy_merges", cut_down(qwen25, 40, 4, legacy_merges=True,
                                                        ascii_only=True)))
    if llama:
        t = cut_down(llama, 40, 0, legacy_merges=True, ascii_only=True)
        t["added_tokens"] = [added(len(t["model"]["vocab"]) + i, s)
                             for i, (s, _) in enumerate(LLAMA3_SPECIALS)]
        small.append(("llama3_1", t))
    if not small:
        small = [("qwen_hand", qwen_tok), ("llama3_hand", llama_tok)]
    for i, (name, tok) in enumerate(small):
        write(os.path.join(d, f"{name}"), dumps(tok) + "\0" + TEXTS[i % len(TEXTS)])
    cfg = dumps({"eos_token": "<|im_end|>", "pad_token": {"content": "<|endoftext|>"}})
    write(os.path.join(d, "qwen_full_bytes_with_config"),
          dumps(qwen_tok) + "\0" + TEXTS[2] + "\0" + cfg)
    # GPT-2 style: ByteLevel with its own regex and prefix space, NFKC in a Sequence, an unk
    # token, added tokens that strip, match single words, or are normalized.
    gpt2 = hand_written(QWEN_REGEX, [], None)
    gpt2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                             "use_regex": True}
    gpt2["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "NFD"}]}
    vocab = gpt2["model"]["vocab"]
    vocab["<unk>"] = len(vocab)
    gpt2["model"]["unk_token"] = "<unk>"
    gpt2["model"]["fuse_unk"] = True
    n = len(vocab)
    gpt2["added_tokens"] = [added(n, "<mask>", True, lstrip=True),
                            added(n + 1, "[SEP]", True, rstrip=True),
                            added(n + 2, "word", False, normalized=True, single_word=True),
                            added(n + 3, "ﬁ", False, normalized=True)]
    write(os.path.join(d, "gpt2_bytelevel_regex"),
          dumps(gpt2) + "\0" + " the word <mask>  [SEP]   wordy ﬁne ＡＢＣ é")
    mixed = hand_written(r"\p{N}+", QWEN_SPECIALS[:3], {"type": "NFD"})
    mixed["pre_tokenizer"]["pretokenizers"].insert(
        1, {"type": "Split", "pattern": {"String": "."}, "behavior": "Isolated", "invert": False})
    write(os.path.join(d, "two_splits_nfd"), dumps(mixed) + "\0" + "1.5 v2.0 Ångström 42")
    return qwen_tok


def safetensors_seeds():
    d = os.path.join(CORPUS, "safetensors_header")

    def st(header, data, pad=True):
        h = dumps(header)
        if pad:
            h += " " * ((8 - len(h) % 8) % 8)
        return struct.pack("<Q", len(h)) + h.encode() + data

    write(os.path.join(d, "empty"), st({}, b""))
    write(os.path.join(d, "metadata_only"), st({"__metadata__": {"format": "pt"}}, b""))
    write(os.path.join(d, "two_tensors"),
          st({"__metadata__": {"format": "pt"},
              "model.norm.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
              "lm_head.weight": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]}},
             bytes(range(32))))
    header, data, off = {}, b"", 0
    for name, size in [("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8), ("I64", 8), ("I32", 4),
                       ("I16", 2), ("I8", 1), ("U8", 1), ("BOOL", 1)]:
        header[f"t.{name.lower()}"] = {"dtype": name, "shape": [1, 2], "data_offsets": [off, off + 2 * size]}
        data += bytes(2 * size)
        off += 2 * size
    write(os.path.join(d, "every_dtype"), st(header, data, pad=False))
    write(os.path.join(d, "empty_and_scalar"),
          st({"a": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]},
              "b": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]}}, bytes(8)))
    # A QLoRA (bitsandbytes) layer as transformers saves it: packed weight plus its state.
    write(os.path.join(d, "bnb_4bit_layer"),
          st({"__metadata__": {"format": "pt"},
              "q_proj.weight": {"dtype": "U8", "shape": [8, 1], "data_offsets": [0, 8]},
              "q_proj.weight.absmax": {"dtype": "U8", "shape": [1], "data_offsets": [8, 9]},
              "q_proj.weight.quant_map": {"dtype": "F32", "shape": [16], "data_offsets": [9, 73]}},
             bytes(73)))


def config_seeds():
    d = os.path.join(CORPUS, "config")
    for src in ["configs/quickstart.yaml", "cluster/example_mixed_workstation.yaml",
                "cluster/example_mixed_cluster.yaml"]:
        with open(os.path.join(REPO, src), encoding="utf-8") as f:
            write(os.path.join(d, os.path.basename(src)), f.read())
    write(os.path.join(d, "minimal_with_overrides"),
          "model: {path: m}\ndata: {train: d.h5}\ntrain: {global_batch_size: 8, epochs: 1}\n"
          "cluster: {ranks: [{device: cpu}]}\n"
          "\0train.lr=3e-4\nfinetune.lora.targets=[q_proj,v_proj]\ncluster.ranks.0.weight=2\n"
          "cluster.backend=mpi")
    write(os.path.join(d, "env_paths_and_ranks"),
          "run:\n  name: r\n  output_dir: runs/${SLURM_JOB_ID:-local}/$$x\n  seed: 0\n"
          "model:\n  path: ${HOME}/models/qwen3\n  dtype: fp16\n  gradient_checkpointing: yes\n"
          "finetune:\n  method: qlora\n  adapter: ${ADAPTER:-a}\n"
          "  lora: {r: 8, alpha: 16.5, dropout: 0, targets: all-linear, rslora: true}\n"
          "data: {train: d.h5, eval: e.h5, seq_len: 16, packing: false, "
          "allow_tokenizer_mismatch: on}\n"
          "train: {global_batch_tokens: 4096, max_steps: 10, warmup_steps: 10, lr_schedule: linear,"
          " weight_decay: 0.1, max_grad_norm: 0, eval_every: 5, log_every: 2}\n"
          "checkpoint: {every: 5, keep: 1, resume: never}\n"
          "cluster:\n  balance: static\n  overlap_grad_sync: off\n  collective_timeout_s: 90.5\n"
          "  ranks:\n"
          "    - {match: {host: a, local_rank: 0, gpu: 3080}, device: 'cuda:0', weight: 3,"
          " micro_batch: 2, dtype: bf16, loss_chunk_tokens: 1024, gradient_checkpointing: true}\n"
          "    - match: {gpu: 1050}\n      device: cpu\n      weight: 0.5\n")


def prepare_seeds():
    d = os.path.join(CORPUS, "jsonl_record")

    def seed(name, fmt, content, flags=0, seq=62, templates=None):
        fmt_bits = {"alpaca": 0, "chat": 1, "text": 2, "template": 3}[fmt]
        data = bytes([fmt_bits | flags, seq]) + content.encode("utf-8")
        if templates:
            data += b"".join(b"\0" + t.encode("utf-8") for t in templates)
        write(os.path.join(d, name), data)

    jl = lambda *records: "".join(dumps(r) + "\n" for r in records)
    seed("alpaca", "alpaca", jl(
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi", "output": "Hi!", "system": "Be brief."},
        {"instruction": "Nothing", "input": None, "output": ""}))
    seed("alpaca_llama3_drop_val", "alpaca", jl(
        {"instruction": "Translate 'chat' to English.", "output": "cat"},
        {"instruction": "x" * 40, "output": "a long answer " * 8}), flags=8 | 4 | 32, seq=20)
    seed("chat", "chat", jl(
        {"messages": [{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}]},
        {"messages": [{"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello", "reasoning_content": "greet"},
                      {"role": "user", "content": "<tool_response>ok</tool_response>"},
                      {"role": "assistant", "content": ""}]}))
    seed("chat_array_forced_llama3", "chat", dumps([
        {"messages": [{"role": "user", "content": "  spaced \u3000"},
                      {"role": "assistant", "content": "\tanswer\n"}]}]), flags=8 | 64 | 128)
    seed("text_jsonl", "text", jl({"text": "The first document."}, {"text": ""},
                                  {"text": "A longer document that will be split " * 4}), seq=10)
    seed("text_lines_txt", "text", "plain line one\r\n\nline three with ünïcode\n", flags=16)
    seed("template", "template", jl({"Question": "Capital of France?", "Response": "Paris",
                                     "n": 3, "ok": True}),
         templates=["Q: {Question} (n={n}, {{literal}})\n", "{Response} {ok}"])
    seed("template_default", "template", jl({"Question": "Why?", "Response": "Because."}))


def chat_seeds():
    d = os.path.join(CORPUS, "chat_template")
    convs = {
        "single_turn": [{"role": "user", "content": "Hello"},
                        {"role": "assistant", "content": "Hi there!"}],
        "system_multi_turn": [{"role": "system", "content": "Be helpful."},
                              {"role": "user", "content": "What is 2+2?"},
                              {"role": "assistant", "content": "4"},
                              {"role": "user", "content": "And 3+3?"},
                              {"role": "assistant", "content": "6"}],
        "think_blocks": [{"role": "user", "content": "Think first"},
                         {"role": "assistant", "content": "<think>\nreasoning\n</think>\n\nanswer"},
                         {"role": "user", "content": "again"},
                         {"role": "assistant", "content": "\n\nno think</think>x</think>y"}],
        "reasoning_field": [{"role": "user", "content": "q"},
                            {"role": "assistant", "content": "a", "reasoning_content": "\nr\n"},
                            {"role": "assistant", "content": "b", "reasoning_content": None}],
        "tool_response_and_late_system": [
            {"role": "user", "content": "call"},
            {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
            {"role": "user", "content": "<tool_response>42</tool_response>"},
            {"role": "system", "content": "late"},
            {"role": "assistant", "content": "It is 42."}],
        "unicode_whitespace_strip": [{"role": "user", "content": "\u2003 \x1c hi \u00a0\n"},
                                     {"role": "assistant", "content": "\u3000 ok \u2029"}],
    }
    for name, messages in convs.items():
        write(os.path.join(d, name), dumps(messages))


def hdf5_seeds():
    try:
        import h5py
        import numpy as np
    except ImportError:
        print("h5py not found: HDF5 seeds not written (run with the project virtualenv)")
        return
    d = os.path.join(CORPUS, "hdf5_index")
    os.makedirs(d, exist_ok=True)

    def token_file(name, samples, vocab=300, chunk=16, compress=False, fixed_strings=False,
                   extra=None):
        offsets = np.zeros(len(samples) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(t) for t, _ in samples])
        tokens = np.array([x for t, _ in samples for x in t], dtype=np.int32)
        mask = np.array([0 if i == 0 else x for _, m in samples for i, x in enumerate(m)],
                        dtype=np.uint8)
        loss = np.array([sum(m[1:]) for _, m in samples], dtype=np.int32)
        path = os.path.join(d, name)
        with h5py.File(path, "w", libver="earliest") as f:
            kw = {"chunks": (chunk,), "maxshape": (None,)}
            if compress:
                kw.update(compression="gzip", shuffle=True)
            f.create_dataset("tokens", data=tokens, **kw)
            f.create_dataset("loss_mask", data=mask, **kw)
            f.create_dataset("offsets", data=offsets)
            f.create_dataset("loss_tokens", data=loss)
            s = (lambda v: np.bytes_(v)) if fixed_strings else (lambda v: v)
            f.attrs["format"] = s("loom-tokens")
            f.attrs["format_version"] = np.int64(1)
            f.attrs["vocab_size"] = np.int64(vocab)
            f.attrs["tokenizer_hash"] = s("0" * 16)
            f.attrs["eos_id"] = np.int64(vocab - 1)
            f.attrs["pad_id"] = np.int64(-1)
            f.attrs["source_files"] = [s("train.jsonl")]
            f.attrs["template"] = s('{"format":"chat"}')
            f.attrs["created"] = s("2025-01-01T00:00:00Z")
            f.attrs["num_samples"] = np.int64(len(samples))
            f.attrs["num_tokens"] = np.int64(len(tokens))
            f.attrs["num_loss_tokens"] = np.int64(int(loss.sum()))
            for k, v in (extra or {}).items():
                f.attrs[k] = v

    three = [([1, 2, 3, 4], [0, 0, 1, 1]), ([5, 6], [0, 1]), ([7, 8, 9, 10, 11, 12, 13, 14, 15],
                                                              [0, 1, 1, 1, 0, 0, 1, 1, 1])]
    token_file("three_samples", three)
    token_file("three_samples_gzip", three, compress=True)
    token_file("fixed_length_strings", three[:2], fixed_strings=True)
    token_file("empty_samples", [([], []), ([9], [1]), ([], [])])
    token_file("no_samples", [])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizers", default=os.path.join(REPO, "..", "shared", "tokenizers"),
                        help="folder with qwen3/, qwen2_5/, llama3_1/ tokenizer.json files")
    args = parser.parse_args()
    tokenizers_and_fixtures(args.tokenizers)
    safetensors_seeds()
    config_seeds()
    prepare_seeds()
    chat_seeds()
    hdf5_seeds()


if __name__ == "__main__":
    main()
