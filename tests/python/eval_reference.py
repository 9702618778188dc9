"""Reference values from transformers / PEFT for `trainer eval` and `trainer export`
(tests/main/model_commands_test.cpp).

    eval_reference.py make OUT [--seed N]
        A tiny random qwen3 model in OUT/model (make_tiny_model.py) and a PEFT LoRA adapter
        for it in OUT/adapter (r=4, alpha=8, q/v/o/down projections, lora_A and lora_B
        random so that the adapter changes the logits).
    eval_reference.py adapter MODEL_DIR OUT [--seed N]
        Such a random adapter for an existing model folder.
    eval_reference.py make OUT --variant V
        The same with another make_tiny_model.py variant (qwen3_bnb, ... for 4-bit tests).
    eval_reference.py loss MODEL_DIR DATA.h5 SEQ_LEN [--adapter DIR] [--4bit]
        The next-token loss of the model (fp32, PeftModel when --adapter) over every sample of
        a Loom token file, each sample run alone and cut to its first SEQ_LEN tokens: position
        t predicts token t+1 where loss_mask[t+1] == 1. Prints one JSON line
        {"loss_sum", "tokens", "loss", "samples"}. --4bit: the base loaded with bitsandbytes
        (BitsAndBytesConfig nf4, double quant, fp32 compute); a folder saved in 4-bit loads as
        it is.
    eval_reference.py save4bit MODEL_DIR OUT
        MODEL_DIR loaded in 4-bit as above and saved with save_pretrained (a `-bnb-4bit` folder).
    eval_reference.py verify [--tol T] JOB...
        JOB is SPEC=SPEC, SPEC full:MODEL_DIR or peft:BASE_DIR:ADAPTER_DIR. Both sides are
        loaded (AutoModelForCausalLM.from_pretrained / PeftModel.from_pretrained) and their
        fp32 logits on a fixed random batch compared. Prints the max abs difference per job;
        exits 1 when one exceeds --tol.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_model import VOCAB, make_model  # noqa: E402


def save_random_adapter(model, out, seed):
    from peft import LoraConfig, get_peft_model
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                        target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
    peft_model = get_peft_model(model, config)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:  # PEFT starts lora_B at zero: randomise both
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    peft_model.save_pretrained(out)


def cmd_make(args):
    model = make_model(args.variant, os.path.join(args.out, "model"), seed=args.seed)
    save_random_adapter(model, os.path.join(args.out, "adapter"), args.seed)


def cmd_adapter(args):
    from transformers import AutoModelForCausalLM
    save_random_adapter(AutoModelForCausalLM.from_pretrained(args.model), args.out, args.seed)


def load_model(base_dir, adapter_dir=None, four_bit=False):
    from transformers import AutoModelForCausalLM
    if four_bit:
        import bitsandbytes as bnb
        from transformers import BitsAndBytesConfig
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.float32)
        with open(os.path.join(base_dir, "config.json")) as f:
            prequantized = "quantization_config" in json.load(f)
        model = AutoModelForCausalLM.from_pretrained(
            base_dir, dtype=torch.float32, device_map="cpu",
            **({} if prequantized else {"quantization_config": quant}))
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                # On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights for inference
                # and computes in bf16; keep its fp32 dequantize + matmul path.
                module.support_avx512bf16_for_cpu = False
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    return model


def cmd_loss(args):
    import h5py
    model = load_model(args.model, args.adapter, four_bit=args.four_bit)
    with h5py.File(args.data, "r") as f:
        tokens = torch.from_numpy(f["tokens"][:]).long()
        mask = torch.from_numpy(f["loss_mask"][:]).long()
        offsets = f["offsets"][:].tolist()
    total = 0.0
    count = 0
    samples = 0
    with torch.no_grad():
        for i in range(len(offsets) - 1):
            t = tokens[offsets[i]:offsets[i + 1]][:args.seq_len]
            m = mask[offsets[i]:offsets[i + 1]][:args.seq_len]
            if t.numel() == 0:
                continue
            samples += 1
            sel = m[1:].bool()
            if not sel.any():
                continue
            logits = model(input_ids=t[None]).logits[0].float()  # [n, V]
            total += torch.nn.functional.cross_entropy(
                logits[:-1][sel].double(), t[1:][sel], reduction="sum").item()
            count += int(sel.sum())
    print(json.dumps({"loss_sum": total, "tokens": count, "loss": total / max(count, 1),
                      "samples": samples}))


def load_spec(spec):
    kind, _, rest = spec.partition(":")
    if kind == "full":
        return load_model(rest)
    if kind == "peft":
        base, _, adapter = rest.partition(":")
        return load_model(base, adapter)
    raise SystemExit(f"bad model spec {spec!r}: expected full:DIR or peft:BASE:ADAPTER")


def cmd_verify(args):
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, VOCAB, (2, 19), generator=g)
    worst = 0.0
    for job in args.jobs:
        a, _, b = job.partition("=")
        with torch.no_grad():
            la = load_spec(a)(input_ids=tokens).logits.float()
            lb = load_spec(b)(input_ids=tokens).logits.float()
        diff = (la - lb).abs().max().item()
        worst = max(worst, diff)
        print(f"{job}: max_abs_diff={diff:.3e} (logit scale {lb.abs().max().item():.3g})")
    sys.exit(1 if worst > args.tol else 0)


def cmd_save4bit(args):
    model = load_model(args.model, four_bit=True)
    model.save_pretrained(args.out)


def main(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--seed", type=int, default=3)
    m.add_argument("--variant", default="qwen3")
    ad = sub.add_parser("adapter")
    ad.add_argument("model")
    ad.add_argument("out")
    ad.add_argument("--seed", type=int, default=3)
    lo = sub.add_parser("loss")
    lo.add_argument("model")
    lo.add_argument("data")
    lo.add_argument("seq_len", type=int)
    lo.add_argument("--adapter")
    lo.add_argument("--4bit", dest="four_bit", action="store_true")
    s4 = sub.add_parser("save4bit")
    s4.add_argument("model")
    s4.add_argument("out")
    v = sub.add_parser("verify")
    v.add_argument("jobs", nargs="+")
    v.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args(argv)
    {"make": cmd_make, "adapter": cmd_adapter, "loss": cmd_loss, "verify": cmd_verify,
     "save4bit": cmd_save4bit}[args.cmd](args)


if __name__ == "__main__":
    main(sys.argv[1:])
