"""Reference values from transformers / PEFT for Loom's model tests (tests/model/).

    model_reference.py make OUT VARIANT... [--peft VARIANT...]
        For each VARIANT (see make_tiny_model.py): a tiny random model in OUT/VARIANT and
        OUT/VARIANT/ref.safetensors with a padded batch of two rows (tokens, attention_mask,
        loss_mask), fp32 logits and the summed next-token loss. With --bf16 DEVICE (cpu or
        cuda), also the logits of the model loaded in bf16 on that device ("logits_bf16", sdpa).
        For each --peft VARIANT and rsLoRA off/on: a PEFT all-linear adapter (r=4, alpha=8,
        A and B random) saved to OUT/VARIANT/adapter_rs{0,1}, with peft_ref.safetensors there
        holding PEFT's logits, loss sum and the gradients of every LoRA weight (key
        "grad." + adapter key) for the same batch (train mode, dropout 0).
    model_reference.py verify JOB...
        JOB is adapter:BASE_DIR:ADAPTER_DIR:LOOM_FILE or full:MODEL_DIR:LOOM_FILE. LOOM_FILE
        holds Loom's tokens, attention_mask and logits; the model is loaded with
        PeftModel.from_pretrained / AutoModelForCausalLM.from_pretrained and its logits are
        compared at valid positions. Prints the max abs difference; exits 1 above --tol.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_model import VOCAB, make_model  # noqa: E402

LENGTHS = (11, 7)


def make_batch(seed=123):
    g = torch.Generator().manual_seed(seed)
    t = max(LENGTHS)
    tokens = torch.randint(0, VOCAB, (len(LENGTHS), t), generator=g)
    attention = torch.zeros_like(tokens)
    for b, n in enumerate(LENGTHS):
        attention[b, :n] = 1
    loss_mask = (torch.rand(tokens.shape, generator=g) < 0.7).long() * attention
    tokens = tokens * attention  # pads are token 0
    return tokens, attention, loss_mask


def loss_sum(logits, tokens, attention, loss_mask):
    """Sum of CE where position t predicts tokens[t+1] with loss_mask[t+1] (same row, valid)."""
    logits = logits.float()
    total = torch.zeros((), dtype=torch.float32)
    count = 0
    for b in range(tokens.shape[0]):
        n = int(attention[b].sum())
        sel = loss_mask[b, 1:n].bool()
        if sel.any():
            total = total + torch.nn.functional.cross_entropy(
                logits[b, : n - 1][sel], tokens[b, 1:n][sel], reduction="sum")
            count += int(sel.sum())
    return total, count


def cmd_make(args):
    from safetensors.torch import save_file
    tokens, attention, loss_mask = make_batch()
    for i, variant in enumerate(args.variants):
        out = os.path.join(args.out, variant)
        model = make_model(variant, out, seed=i + 1)
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=tokens, attention_mask=attention).logits.float()
        total, count = loss_sum(logits, tokens, attention, loss_mask)
        ref = {"tokens": tokens, "attention_mask": attention, "loss_mask": loss_mask,
               "logits": logits.contiguous(), "loss_sum": total.reshape(1),
               "loss_count": torch.tensor([count])}
        if args.bf16:
            from transformers import AutoModelForCausalLM
            m16 = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16,
                                                       attn_implementation="sdpa")
            m16 = m16.to(args.bf16).eval()
            with torch.no_grad():
                ref["logits_bf16"] = m16(input_ids=tokens.to(args.bf16),
                                         attention_mask=attention.to(args.bf16)).logits.float().cpu()
        save_file(ref, os.path.join(out, "ref.safetensors"))
    for variant in args.peft or []:
        make_peft(os.path.join(args.out, variant), tokens, attention, loss_mask)


def make_peft(model_dir, tokens, attention, loss_mask):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM
    for rs in (0, 1):
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0,
                         use_rslora=bool(rs))
        pm = get_peft_model(base, cfg)
        g = torch.Generator().manual_seed(7 + rs)
        with torch.no_grad():
            for name, p in pm.named_parameters():
                if "lora_" in name:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
        adapter_dir = os.path.join(model_dir, f"adapter_rs{rs}")
        pm.save_pretrained(adapter_dir)
        pm.train()
        logits = pm(input_ids=tokens, attention_mask=attention).logits
        total, count = loss_sum(logits, tokens, attention, loss_mask)
        total.backward()
        out = {"logits": logits.detach().float().contiguous(), "loss_sum": total.detach().reshape(1)}
        for name, p in pm.named_parameters():
            if p.requires_grad:
                out["grad." + name.replace(".default", "")] = p.grad.contiguous()
        save_file(out, os.path.join(adapter_dir, "peft_ref.safetensors"))


def cmd_verify(args):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    worst = 0.0
    for job in args.jobs:
        parts = job.split(":")
        if parts[0] == "adapter":
            from peft import PeftModel
            _, base_dir, adapter_dir, loom_file = parts
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
            model = PeftModel.from_pretrained(model, adapter_dir)
        else:
            _, model_dir, loom_file = parts
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model.eval()
        loom = load_file(loom_file)
        with torch.no_grad():
            logits = model(input_ids=loom["tokens"].long(),
                           attention_mask=loom["attention_mask"].long()).logits.float()
        valid = loom["attention_mask"].bool()
        diff = (logits[valid] - loom["logits"].float()[valid]).abs().max().item()
        worst = max(worst, diff)
        print(f"verify {parts[0]} {parts[-2]}: max_abs_diff={diff:.3e}", flush=True)
    if worst > args.tol:
        print(f"FAILED: max_abs_diff {worst:.3e} > tol {args.tol:.1e}")
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("variants", nargs="+")
    m.add_argument("--peft", nargs="*")
    m.add_argument("--bf16", choices=["cpu", "cuda"])
    v = sub.add_parser("verify")
    v.add_argument("jobs", nargs="+")
    v.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    return cmd_make(a) if a.cmd == "make" else cmd_verify(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
