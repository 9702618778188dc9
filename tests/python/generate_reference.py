"""Generation references from transformers (and PEFT), for tests/model/generate_test.cpp.

    generate_reference.py SPEC.json OUT.json

SPEC: {"dir": D, "models": [{"variant": V, "adapter": bool, "four_bit": bool}, ...], "prompts": [[ids], ...],
       "max_new_tokens": N, "pad": P,
       "processors": {"logits": [[...], ...], "sequences": [[...], ...],
                      "settings": [{"temperature": t, "top_k": k, "top_p": p,
                                    "repetition_penalty": r}, ...]}}
Each model is made with make_tiny_model.py into D/V (and a PEFT all-linear adapter, r=4,
alpha=8, A and B random, into D/V/adapter when asked); four_bit loads the base as QLoRA does
(bitsandbytes NF4, double quantization, fp32 compute), named "V[+adapter]+4bit". For each model and each eos setting
(none: an id outside the vocabulary; then the token row 0 produced at step 5, so that one row
stops early and the others go on with padding fed, as transformers does), greedy
model.generate on the left-padded batch. OUT: {"greedy": {"V[+adapter]": {"eos": [e1, e2],
"tokens": [[[new ids per row]] per eos]}}, "processed": [[[scores]] per settings]} with
-inf written as null.
"""

import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_model import VOCAB, make_model  # noqa: E402


def left_padded(prompts, pad):
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    return ids, mask


def new_tokens(out, width, eos):
    rows = []
    for row in out[:, width:].tolist():
        kept = []
        for t in row:
            kept.append(t)
            if t == eos:
                break
        rows.append(kept)
    return rows


def load_4bit(model_dir):
    """QLoRA's base: bitsandbytes NF4 with double quantization, fp32 compute (CPU path, its
    AVX512-BF16 repacking off), as eval_reference.py loads it."""
    from eval_reference import load_model
    return load_model(model_dir, four_bit=True)


def main(spec_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)
    from transformers import AutoModelForCausalLM
    result = {"greedy": {}, "processed": []}
    ids, mask = left_padded(spec["prompts"], spec["pad"])
    n = spec["max_new_tokens"]
    for m in spec["models"]:
        variant = m["variant"]
        model_dir = os.path.join(spec["dir"], variant)
        if not os.path.exists(os.path.join(model_dir, "config.json")):
            make_model(variant, model_dir, seed=3)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        name = variant
        if m.get("adapter"):
            from peft import LoraConfig, PeftModel, get_peft_model
            adapter_dir = os.path.join(model_dir, "adapter")
            if not os.path.exists(adapter_dir):
                cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
                pm = get_peft_model(model, cfg)
                g = torch.Generator().manual_seed(11)
                with torch.no_grad():
                    for pname, p in pm.named_parameters():
                        if "lora_" in pname:
                            p.copy_(0.1 * torch.randn(p.shape, generator=g))
                pm.save_pretrained(adapter_dir)
                model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            if m.get("four_bit"):
                model = load_4bit(model_dir)
            model = PeftModel.from_pretrained(model, adapter_dir)
            name += "+adapter"
        elif m.get("four_bit"):
            model = load_4bit(model_dir)
        if m.get("four_bit"):
            name += "+4bit"
        model.eval()
        entry = {"eos": [], "tokens": []}
        eos = VOCAB + 7  # never produced: every row runs to max_new_tokens
        for round_ in range(2):
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                     max_new_tokens=n, pad_token_id=spec["pad"],
                                     eos_token_id=eos, use_cache=True)
            rows = new_tokens(out, ids.shape[1], eos)
            entry["eos"].append(eos)
            entry["tokens"].append(rows)
            if round_ == 0:
                eos = rows[0][5]  # then row 0 stops at step 5 (or earlier, where it appears)
        result["greedy"][name] = entry

    proc = spec.get("processors")
    if proc:
        from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                  TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
        logits = torch.tensor(proc["logits"], dtype=torch.float32)
        sequences = torch.tensor(proc["sequences"], dtype=torch.long)
        for s in proc["settings"]:
            chain = LogitsProcessorList()
            if s["repetition_penalty"] != 1.0:
                chain.append(RepetitionPenaltyLogitsProcessor(s["repetition_penalty"]))
            if s["temperature"] > 0:  # sampling: the warpers, in generate's order
                chain.append(TemperatureLogitsWarper(s["temperature"]))
                if s["top_k"] > 0:
                    chain.append(TopKLogitsWarper(s["top_k"]))
                if s["top_p"] < 1.0:
                    chain.append(TopPLogitsWarper(s["top_p"]))
            scores = chain(sequences, logits.clone())
            result["processed"].append(
                [[None if math.isinf(v) else v for v in row] for row in scores.tolist()])
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
