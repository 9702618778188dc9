"""speed_bench.py's Hugging Face side: the probe of the Python stack (--role probe), the
Hugging Face Trainer + PEFT child (--role hf), and the parent's run_hf that starts that child
and reads its timings. See speed_bench.py for what the benchmark measures.
"""
import json
import os
import platform
import sys
import time

from speed_bench_data import ENTRY, log, run_child, tail


# ---------------------------------------------------------------------------- child roles

def role_probe(out):
    import importlib.util
    import torch
    import transformers
    import peft
    info = {"torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version(),
            "flash_attn": None, "cuda": torch.cuda.is_available(), "torch_threads":
            torch.get_num_threads(), "cpu": cpu_name(), "cpu_count": os.cpu_count()}
    if importlib.util.find_spec("flash_attn") is not None:
        try:
            import flash_attn
            info["flash_attn"] = flash_attn.__version__
        except Exception as e:  # installed but broken: HF would fail too
            info["flash_attn_error"] = str(e)[:200]
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_capability"] = list(torch.cuda.get_device_capability(0))
        info["gpu_memory"] = torch.cuda.get_device_properties(0).total_memory
        info["torch_cuda"] = torch.version.cuda
    for dev in ["cpu"] + (["cuda"] if info["cuda"] else []):
        try:  # does fused AdamW run on this device?
            p = torch.nn.Parameter(torch.ones(4, device=dev))
            p.grad = torch.ones(4, device=dev)
            torch.optim.AdamW([p], lr=1e-3, fused=True).step()
            info[f"fused_adamw_{dev}"] = True
        except Exception:
            info[f"fused_adamw_{dev}"] = False
    with open(out, "w") as f:
        json.dump(info, f)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def role_hf(spec_path):
    """Hugging Face Trainer + PEFT, as a Python user runs it, on the bench's samples."""
    with open(spec_path) as f:
        spec = json.load(f)
    rss_start = rss_now()
    import h5py
    import numpy as np
    import torch
    import transformers
    from transformers import (AutoModelForCausalLM, DataCollatorForSeq2Seq,
                              DataCollatorWithFlattening, PreTrainedTokenizerFast, Trainer,
                              TrainerCallback, TrainingArguments)
    rss_imports = rss_now()
    cuda = spec["device"] == "cuda"
    dev = torch.device("cuda" if cuda else "cpu")
    full = spec["method"] == "full"
    # LoRA: base in the compute dtype, adapters fp32 (PEFT's default), bf16 autocast.
    # Full: fp32 weights + bf16 autocast (Loom's numerics: fp32 masters and moments), unless
    # --hf-full-dtype bf16 (pure bf16 weights and AdamW state).
    if not cuda:
        load_dtype = torch.float32
    elif full and spec["hf_full_dtype"] == "fp32":
        load_dtype = torch.float32
    else:
        load_dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=load_dtype,
                                                 attn_implementation=spec["attn"])
    model.to(dev)
    if not full:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                 target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    loaded = torch.cuda.memory_allocated() if cuda else None

    with h5py.File(spec["data"], "r") as f:
        tokens = f["tokens"][:]
        mask = f["loss_mask"][:]
        offsets = f["offsets"][:]
    samples = []
    for i in spec["order"]:
        a, b = int(offsets[i]), int(offsets[i + 1])
        ids = tokens[a:b].astype(np.int64)
        labels = np.where(mask[a:b] == 1, ids, -100)
        labels[0] = -100
        samples.append({"input_ids": ids.tolist(), "labels": labels.tolist()})
    if spec["collator"] == "flatten":
        collator = DataCollatorWithFlattening()
    else:
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2},
                                                 unk_token="<unk>")),
            pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
        for s in samples:
            s["attention_mask"] = [1] * len(s["input_ids"])
        collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)

    class Samples(torch.utils.data.Dataset):
        def __len__(self):
            return len(samples)

        def __getitem__(self, i):
            return samples[i]

    marks, losses = [], []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append([state.global_step, float(logs["loss"])])

    ckpt = {}
    if spec["checkpointing"]:  # transformers 5 renamed it; either name, whichever exists
        name = "activation_checkpointing" if "activation_checkpointing" in \
            TrainingArguments.__dataclass_fields__ else "gradient_checkpointing"
        ckpt = {name: True, name + "_kwargs": {"use_reentrant": False}}
    args = TrainingArguments(
        output_dir=spec["out"], max_steps=spec["steps"],
        per_device_train_batch_size=spec["hf_micro_batch"],
        gradient_accumulation_steps=spec["accum"], learning_rate=spec["lr"],
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim=spec["optim"], bf16=cuda, use_cpu=not cuda, logging_steps=1,
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, train_sampling_strategy="sequential",
        remove_unused_columns=False, seed=1, **ckpt)
    trainer = Trainer(model=model, args=args, train_dataset=Samples(), data_collator=collator,
                      callbacks=[Clock()])
    trainer.train()
    res = {"marks": marks, "losses": losses, "trainable": trainable, "loaded": loaded,
           "peak": torch.cuda.max_memory_allocated() if cuda else None,
           "peak_reserved": torch.cuda.max_memory_reserved() if cuda else None,
           "rss_start": rss_start, "rss_imports": rss_imports,
           "threads": torch.get_num_threads(), "load_dtype": str(load_dtype).replace("torch.", ""),
           "attn": getattr(model.config, "_attn_implementation", spec["attn"]),
           "optimizer": type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                             else trainer.optimizer).__name__}
    with open(spec["result"], "w") as f:
        json.dump(res, f)


def rss_now():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------- run

def run_hf(a, work, model_dir, data, order, batch_samples, collator, probe):
    tag = f"hf-{collator}"
    spec = {"model": model_dir, "data": data, "order": order, "device": a.device,
            "method": a.method, "steps": a.steps, "hf_micro_batch": a.hf_micro_batch,
            "accum": batch_samples // a.hf_micro_batch, "lr": a.lr, "collator": collator,
            "attn": a.attn, "optim": a.optim, "checkpointing": a.checkpointing,
            "hf_full_dtype": a.hf_full_dtype, "out": os.path.join(work, tag),
            "result": os.path.join(work, tag + ".json")}
    spec_path = os.path.join(work, tag + "-spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    if os.path.exists(spec["result"]):
        os.remove(spec["result"])
    cmd = [sys.executable, ENTRY, "--role", "hf", "--spec", spec_path]
    log(f"{tag}: {' '.join(cmd)}")
    rc, rss, wall = run_child(cmd, os.path.join(work, tag + ".log"), a.timeout)
    res = {"rc": rc, "rss": rss, "wall": wall, "log": os.path.join(work, tag + ".log")}
    if rc != 0 or not os.path.exists(spec["result"]):
        res["error"] = tail(res["log"])
        return res
    with open(spec["result"]) as f:
        res.update(json.load(f))
    marks = res["marks"]  # [train begin, end of step 1, ..., end of step N]
    res["step_s"] = [marks[i + 1] - marks[i] for i in range(len(marks) - 1)]
    if len(marks) > a.warmup + 1:
        res["time"] = marks[-1] - marks[a.warmup]
        res["timed_steps"] = len(marks) - 1 - a.warmup
    res["loss1"] = res["losses"][0][1] if res["losses"] else None
    return res
