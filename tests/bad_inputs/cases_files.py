"""Bad-input case groups for the binary files a run loads: model (config.json, quantized or
truncated folders, shapes, dtypes, shard index), safetensors (headers), hdf5 (token files) and
adapter. Part of make_cases.py.
"""
import json
import os
import shutil

from cases_common import (BAD_JSON, any_of, line_of, st_load_numpy, st_read, st_save_numpy,
                          st_write)


class FileCases:
    """Case groups mixed into make_cases.Generator (see its helpers: case, write, copy,
    yaml, prep_argv, train_case, TRAIN, ...)."""

    # ---- groups -------------------------------------------------------------------------

    def model_copy(self, d, name="model"):
        return self.copy(self.model, os.path.join(d, name))

    def group_model(self):
        g = "model"
        cfg_text = open(os.path.join(self.model, "config.json")).read()
        cfg = json.loads(cfg_text)
        st = os.path.join(self.model, "model.safetensors")
        tensors = st_load_numpy(st)

        def inspect(cid, words, edit, exit=2, **kw):
            d = self.case("model." + cid, g, ["{trainer}", "inspect", "--model", "model"],
                          exit=exit, words=words, **kw)
            m = self.model_copy(d)
            edit(m)
            return d

        def train(cid, words, edit, **kw):
            d = self.train_case("model." + cid, g, self.yaml(model="model"), words, **kw)
            m = self.model_copy(d)
            edit(m)
            return d

        def set_cfg(**changes):
            def f(m):
                c = json.loads(cfg_text)
                for k, v in changes.items():
                    if v is None:
                        c.pop(k, None)
                    else:
                        c[k] = v
                self.write(m, "config.json", json.dumps(c, indent=2))
            return f

        def set_tensors(fn, meta=None):
            def f(m):
                t = dict(tensors)
                fn(t)
                st_save_numpy(os.path.join(m, "model.safetensors"), t, meta or {"format": "pt"})
            return f

        inspect("control", ["qwen3"], lambda m: None, exit=0)
        self.train_case("model.control_train", g, self.yaml(), [], exit=0,
                        absent=[], post=[{"exists": "run/adapter/adapter_config.json"}])
        inspect("missing_config_json", ["config.json", "model"],
                lambda m: os.remove(os.path.join(m, "config.json")))
        inspect("broken_config_json", ["config.json", BAD_JSON],
                lambda m: self.write(m, "config.json", cfg_text[:40]))
        inspect("model_type_gpt2", ["config.json", "model_type", "gpt2"],
                set_cfg(model_type="gpt2"))
        inspect("missing_hidden_size", ["config.json", "hidden_size"], set_cfg(hidden_size=None))
        inspect("hidden_size_string", ["config.json", "hidden_size"], set_cfg(hidden_size="64"))
        inspect("heads_not_divisible", ["config.json", "num_key_value_heads"],
                set_cfg(num_attention_heads=3))
        inspect("negative_vocab", ["config.json", "vocab_size"], set_cfg(vocab_size=-5))

        def truncate(m, keep=0.6):
            p = os.path.join(m, "model.safetensors")
            raw = open(p, "rb").read()
            open(p, "wb").write(raw[:int(len(raw) * keep)])

        inspect("truncated_safetensors_inspect", ["model.safetensors",
                                                  any_of("truncated", "shorter", "bytes", "size")],
                truncate, note="issue 15: inspect --model reported config.json numbers, exit 0")
        train("missing_safetensors_train", ["model.path", "safetensors"],
              lambda m: os.remove(os.path.join(m, "model.safetensors")))
        train("truncated_safetensors_train", ["model.safetensors"], truncate)

        def gptq(m, awq=False):
            c = json.loads(cfg_text)
            c["quantization_config"] = (
                {"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm",
                 "zero_point": True} if awq else
                {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False,
                 "sym": True, "checkpoint_format": "gptq"})
            self.write(m, "config.json", json.dumps(c, indent=2))
            import numpy as np
            t = {}
            for name, v in tensors.items():
                if name.endswith("_proj.weight") and "layers." in name:
                    stem = name[:-len(".weight")]
                    out_f, in_f = v.shape
                    if awq:
                        t[stem + ".qweight"] = np.zeros((in_f, out_f // 8), np.int32)
                        t[stem + ".qzeros"] = np.zeros((in_f // 32, out_f // 8), np.int32)
                    else:
                        t[stem + ".qweight"] = np.zeros((in_f // 8, out_f), np.int32)
                        t[stem + ".qzeros"] = np.zeros((in_f // 32, out_f // 8), np.int32)
                        t[stem + ".g_idx"] = (np.arange(in_f) // 32).astype(np.int32)
                    t[stem + ".scales"] = np.ones((in_f // 32, out_f), np.float16)
                else:
                    t[name] = v
            st_save_numpy(os.path.join(m, "model.safetensors"), t, {"format": "pt"})

        inspect("gptq_inspect", ["config.json", "GPTQ"], gptq,
                note="issue 15: reported as a missing tensor")
        train("gptq_train", ["GPTQ"], gptq)
        inspect("awq_inspect", ["config.json", "AWQ"], lambda m: gptq(m, awq=True))
        train("awq_train", ["AWQ"], lambda m: gptq(m, awq=True))
        inspect("bnb_8bit", ["config.json", any_of("8-bit", "8bit", "load_in_8bit", "int8")],
                set_cfg(quantization_config={"quant_method": "bitsandbytes",
                                             "load_in_8bit": True, "load_in_4bit": False}))
        inspect("bnb_fp4", ["config.json", "fp4"],
                set_cfg(quantization_config={"quant_method": "bitsandbytes",
                                             "load_in_4bit": True,
                                             "bnb_4bit_quant_type": "fp4"}))
        inspect("fp8_quant", ["config.json", "fp8"],
                set_cfg(quantization_config={"quant_method": "fp8", "activation_scheme": "dynamic"}))
        q = "model.layers.0.self_attn.q_proj.weight"

        def wrong_shape(t):
            t[q] = t[q][:, :32].copy()

        train("wrong_shape", [q, any_of("shape", "[64, 32]", "64, 32")], set_tensors(wrong_shape))
        train("missing_tensor", ["model.norm.weight"],
              set_tensors(lambda t: t.pop("model.norm.weight")))

        def int_dtype(t):
            t["model.norm.weight"] = t["model.norm.weight"].astype("int32")

        train("int_dtype_tensor", ["model.norm.weight", any_of("dtype", "I32", "int32")],
              set_tensors(int_dtype))

        def vocab_mismatch(m):
            set_cfg(vocab_size=cfg["vocab_size"] + 10)(m)

        train("vocab_size_mismatch", ["model.embed_tokens.weight"], vocab_mismatch)

        def sharded(m):
            os.remove(os.path.join(m, "model.safetensors"))
            st_save_numpy(os.path.join(m, "model-00001-of-00002.safetensors"), tensors,
                          {"format": "pt"})
            wm = {n: ("model-00002-of-00002.safetensors" if n == "model.norm.weight"
                      else "model-00001-of-00002.safetensors") for n in tensors}
            self.write(m, "model.safetensors.index.json",
                       json.dumps({"metadata": {}, "weight_map": wm}))

        train("index_missing_shard", ["model.safetensors.index.json",
                                      "model-00002-of-00002.safetensors"], sharded)

    def group_safetensors(self):
        g = "safetensors"
        st = os.path.join(self.model, "model.safetensors")
        header, data = st_read(st)
        names = sorted(k for k in header if k != "__metadata__")
        norm = "model.norm.weight"
        assert norm in header

        def case(cid, words, edit, argv=None, **kw):
            d = self.case("safetensors." + cid, g, argv or self.EVAL, words=words,
                          files={"run.yaml": self.yaml(model="model", eval_=self.eval_h5)}, **kw)
            m = self.model_copy(d)
            edit(os.path.join(m, "model.safetensors"))
            return d

        def hdr(fn):
            def f(p):
                h = json.loads(json.dumps(header))
                fn(h)
                st_write(p, h, data)
            return f

        self.case("safetensors.control_eval", g, self.EVAL, exit=0, words=['"loss"'],
                  files={"run.yaml": self.yaml(eval_=self.eval_h5)})
        case("header_len_past_end", ["model.safetensors", "header"],
             lambda p: st_write(p, header, data, length=os.path.getsize(st) * 2))
        case("header_len_huge", ["model.safetensors", "header"],
             lambda p: st_write(p, header, data, length=2**63 + 5))
        case("header_not_json", ["model.safetensors", any_of("JSON", "header")],
             lambda p: st_write(p, None, data, header_bytes=b"{{{{" + b" " * 60))
        case("header_not_object", ["model.safetensors", any_of("object", "header")],
             lambda p: st_write(p, None, data, header_bytes=b"[1, 2, 3]   "))
        case("file_too_short", ["model.safetensors", any_of("truncated", "short", "bytes")],
             lambda p: open(p, "wb").write(b"\x10\x00\x00"))
        case("empty_file", ["model.safetensors", any_of("truncated", "empty", "bytes")],
             lambda p: open(p, "wb").write(b""))
        case("data_truncated", ["model.safetensors", any_of("truncated", "bytes", "size")],
             lambda p: open(p, "wb").write(open(st, "rb").read()[:-1000]))

        def past_end(h):
            h[norm]["data_offsets"][1] += 4096
        case("offsets_past_end", [norm, "data_offsets"], hdr(past_end))

        def bad_dtype(h):
            h[norm]["dtype"] = "F8_E9"
        case("unknown_dtype", [norm, "F8_E9"], hdr(bad_dtype))

        def shape_mismatch(h):
            h[norm]["shape"] = [h[norm]["shape"][0] * 2]
        case("shape_vs_offsets", [norm, any_of("shape", "data_offsets")], hdr(shape_mismatch))

        def neg_shape(h):
            h[norm]["shape"] = [-64]
        case("negative_shape", [norm, "shape"], hdr(neg_shape))

        def no_offsets(h):
            del h[norm]["data_offsets"]
        case("missing_data_offsets", [norm, "data_offsets"], hdr(no_offsets))

        def overlap(h):
            a, b = names[0], names[1]
            h[b]["data_offsets"] = list(h[a]["data_offsets"])
            h[b]["shape"] = list(h[a]["shape"])
            h[b]["dtype"] = h[a]["dtype"]
        case("overlapping_tensors", [any_of(names[0], names[1]),
                                     any_of("overlap", "data_offsets")], hdr(overlap))

        def meta_not_string(h):
            h["__metadata__"] = {"format": 5}
        case("metadata_not_string", ["__metadata__"], hdr(meta_not_string))

        def tensor_not_object(h):
            h[norm] = "F32"
        case("tensor_entry_not_object", [norm], hdr(tensor_not_object))
        # The same defects seen by `trainer inspect --model`, which must look at the weights too.
        case("inspect_header_past_end", ["model.safetensors", "header"],
             lambda p: st_write(p, header, data, length=os.path.getsize(st) * 2),
             argv=["{trainer}", "inspect", "--model", "model"])
        case("inspect_unknown_dtype", [norm, "F8_E9"], hdr(bad_dtype),
             argv=["{trainer}", "inspect", "--model", "model"])
        # Through training.
        d = self.train_case("safetensors.train_offsets_past_end", g, self.yaml(model="model"),
                            [norm, "data_offsets"])
        hdr(past_end)(os.path.join(self.model_copy(d), "model.safetensors"))

    def group_hdf5(self):
        g = "hdf5"
        import h5py
        import numpy as np
        n = self.n_train
        late = n - 2

        def train(cid, words, edit, key="train", argv=None, src=None, **kw):
            name = "train.h5" if key == "train" else "eval.h5"
            y = self.yaml(train="train.h5" if key == "train" else None,
                          eval_="eval.h5" if key == "eval" else None)
            if argv is None:
                d = self.train_case("hdf5." + cid, g, y, words, **kw)
            else:
                d = self.case("hdf5." + cid, g, argv, words=words, files={"run.yaml": y}, **kw)
            p = os.path.join(d, name)
            shutil.copyfile(src or (self.train_h5 if key == "train" else self.eval_h5), p)
            edit(p)
            return d

        def tokens_at(sample, pos, value):
            def f(p):
                with h5py.File(p, "r+") as h:
                    off = int(h["offsets"][sample])
                    h["tokens"][off + pos] = value
            return f

        def at_line(key):
            return f"run.yaml:{line_of(self.yaml(), '  ' + key + ':')}:"

        self.case("hdf5.control_inspect", g, ["{trainer}", "inspect", "--data",
                                              "{base}/data/train.h5", "--tokenizer",
                                              "{base}/tiny/model"], exit=0, words=["samples"])
        train("control_train", [], lambda p: None, exit=0, absent=[],
              post=[{"exists": "run/adapter/adapter_model.safetensors"}])
        train("not_hdf5", ["data.train", "train.h5", any_of("HDF5", "not a Loom token file")],
              lambda p: open(p, "w").write("instruction,output\n1,2\n"))
        train("zero_bytes", ["data.train", "train.h5"], lambda p: open(p, "w").close())
        train("truncated", ["data.train", "train.h5"],
              lambda p: open(p, "r+b").truncate(os.path.getsize(p) // 2))
        train("oov_token_late", ["data.train", "train.h5", f"sample {late}",
                                 any_of(str(self.vocab), "vocab")],
              tokens_at(late, 1, self.vocab),
              note="issue 15: ids must be checked when the file is opened, not when read")
        train("negative_token_late", ["data.train", "train.h5", f"sample {late}", "-7"],
              tokens_at(late, 2, -7))

        def loss_count(p):
            with h5py.File(p, "r+") as h:  # the per-file total stays consistent
                h["loss_tokens"][late] = h["loss_tokens"][late] + 3
                h.attrs["num_loss_tokens"] = np.int64(h.attrs["num_loss_tokens"] + 3)
        train("wrong_loss_tokens_late", ["data.train", "train.h5", f"sample {late}",
                                         "loss_tokens"], loss_count)

        def mask_value(p):
            with h5py.File(p, "r+") as h:
                off = int(h["offsets"][late])
                h["loss_mask"][off + 2] = 7
        train("bad_loss_mask_value_late", ["data.train", "train.h5", f"sample {late}",
                                           any_of("loss_mask", "loss mask")], mask_value)

        def empty(p):
            with h5py.File(self.train_h5, "r") as src, h5py.File(p, "w") as h:
                for k, v in src.attrs.items():
                    h.attrs[k] = v
                h.attrs["num_samples"] = np.int64(0)
                h.attrs["num_tokens"] = np.int64(0)
                h.attrs["num_loss_tokens"] = np.int64(0)
                h.create_dataset("tokens", shape=(0,), dtype=np.int32, maxshape=(None,),
                                 chunks=(64,))
                h.create_dataset("loss_mask", shape=(0,), dtype=np.uint8, maxshape=(None,),
                                 chunks=(64,))
                h.create_dataset("offsets", data=np.zeros(1, np.int64))
                h.create_dataset("loss_tokens", shape=(0,), dtype=np.int32)
        train("empty_dataset", ["data.train", "train.h5",
                                any_of("no samples", "empty", "0 samples")], empty,
              note="issue 15: the error named no file")

        def nonmono(p):
            with h5py.File(p, "r+") as h:
                h["offsets"][5] = int(h["offsets"][7])
        train("offsets_decrease", ["data.train", "train.h5", "offsets"], nonmono)

        def attr(name, value):
            def f(p):
                with h5py.File(p, "r+") as h:
                    h.attrs[name] = value
            return f
        train("format_attr_wrong", ["data.train", "train.h5", "format"],
              attr("format", "not-loom"))
        train("format_version_2", ["data.train", "train.h5", "format_version"],
              attr("format_version", np.int64(2)))
        train("num_samples_attr_wrong", ["data.train", "train.h5", "num_samples"],
              attr("num_samples", np.int64(n + 1)))

        def drop(name):
            def f(p):
                with h5py.File(p, "r+") as h:
                    del h[name]
            return f
        train("missing_tokens_dataset", ["data.train", "train.h5", "tokens"], drop("tokens"))
        train("missing_offsets_dataset", ["data.train", "train.h5", "offsets"], drop("offsets"))

        def float_tokens(p):
            with h5py.File(p, "r+") as h:
                t = h["tokens"][...].astype(np.float32)
                del h["tokens"]
                h.create_dataset("tokens", data=t, maxshape=(None,), chunks=(64,))
        train("float_tokens", ["data.train", "train.h5", "tokens"], float_tokens)
        train("other_tokenizer_same_vocab", ["data.train", at_line("train"), "tokenizer",
                                             "allow_tokenizer_mismatch"], lambda p: None,
              src=self.b("data", "train_othertok.h5"),
              note="issue 15: a dataset made with another tokenizer of the same vocab size "
                   "trained to the end")
        if self.have_qwen3:
            train("vocab_larger_than_model", ["data.train", "train.h5", "vocab"], lambda p: None,
                  src=self.b("data", "train_qwen3.h5"))
        train("eval_oov_token", ["data.eval", "eval.h5", any_of(str(self.vocab), "vocab")],
              tokens_at(3, 1, self.vocab + 100), key="eval")
        train("eval_not_hdf5", ["data.eval", "eval.h5"], lambda p: open(p, "w").write("x"),
              key="eval")
        # Other readers of token files.
        train("eval_cmd_negative_token", ["data.eval", "eval.h5", "sample 3", "-1"],
              tokens_at(3, 1, -1), key="eval", argv=self.EVAL)
        train("eval_cmd_empty", ["data.eval", "eval.h5"], empty, key="eval", argv=self.EVAL)
        train("inspect_oov_token", ["train.h5", f"sample {late}"], tokens_at(late, 1, 10**6),
              argv=["{trainer}", "inspect", "--data", "train.h5"])
        train("inspect_truncated", ["train.h5"],
              lambda p: open(p, "r+b").truncate(os.path.getsize(p) // 2),
              argv=["{trainer}", "inspect", "--data", "train.h5"])

    def group_adapter(self):
        g = "adapter"
        st = os.path.join(self.adapter, "adapter_model.safetensors")
        acfg_text = open(os.path.join(self.adapter, "adapter_config.json")).read()
        tensors = st_load_numpy(st)

        def case(cid, words, edit, cmd="eval", **kw):
            y = self.yaml(adapter="adapter", eval_=self.eval_h5)
            argv = self.EVAL if cmd == "eval" else [
                "{trainer}", "export", "--config", "run.yaml", "--out", "out"]
            d = self.case("adapter." + cid, g, argv, words=words, files={"run.yaml": y},
                          absent=["out"], **kw)
            a = self.copy(self.adapter, os.path.join(d, "adapter"))
            edit(a)
            return d

        def set_cfg(**changes):
            def f(a):
                c = json.loads(acfg_text)
                c.update(changes)
                self.write(a, "adapter_config.json", json.dumps(c, indent=2))
            return f

        def set_tensors(fn):
            def f(a):
                t = dict(tensors)
                fn(t)
                st_save_numpy(os.path.join(a, "adapter_model.safetensors"), t, {"format": "pt"})
            return f

        self.case("adapter.control_eval", g, self.EVAL, exit=0, words=['"loss"'],
                  files={"run.yaml": self.yaml(adapter="{base}/run/adapter".replace(
                      "{base}", self.base), eval_=self.eval_h5)})
        self.case("adapter.control_export", g, ["{trainer}", "export", "--config", "run.yaml",
                                                "--out", "out"], exit=0,
                  files={"run.yaml": self.yaml(adapter=self.adapter)},
                  post=[{"exists": "out/adapter_model.safetensors"}])
        case("missing_adapter_config", ["adapter_config.json", "finetune.adapter"],
             lambda a: os.remove(os.path.join(a, "adapter_config.json")))
        case("missing_adapter_weights", ["adapter_model.safetensors", "finetune.adapter"],
             lambda a: os.remove(os.path.join(a, "adapter_model.safetensors")))
        case("broken_adapter_config", ["adapter_config.json", BAD_JSON],
             lambda a: self.write(a, "adapter_config.json", acfg_text[:30]))
        case("peft_type_prefix", ["adapter_config.json", "peft_type", "PREFIX_TUNING"],
             set_cfg(peft_type="PREFIX_TUNING"))
        case("r_mismatch", ["adapter_model.safetensors", self.lora_a,
                            any_of("shape", "r")], set_cfg(r=8))
        case("unknown_target", ["adapter_config.json", any_of("target_modules", "LoRA target"),
                                "qq_proj"],
             set_cfg(target_modules=["q_proj", "qq_proj"]))
        case("use_dora", ["adapter_config.json", "use_dora"], set_cfg(use_dora=True))
        case("bias_all", ["adapter_config.json", "bias"], set_cfg(bias="all"))
        case("r_string", ["adapter_config.json", "r"], set_cfg(r="4"))

        def narrow(t):
            t[self.lora_a] = t[self.lora_a][:, :32].copy()
        case("other_base_shape", [self.lora_a, "shape"], set_tensors(narrow), cmd="export")
        case("missing_tensor", [self.lora_b], set_tensors(lambda t: t.pop(self.lora_b)),
             cmd="export")
        extra = self.lora_a.replace("layers.0.", "layers.7.")
        case("tensor_for_missing_layer", [extra],
             set_tensors(lambda t: t.__setitem__(extra, t[self.lora_a])), cmd="export")
        case("truncated_weights", ["adapter_model.safetensors"],
             lambda a: open(os.path.join(a, "adapter_model.safetensors"), "r+b").truncate(
                 os.path.getsize(st) // 2), cmd="export")

        def header_bad(a):
            p = os.path.join(a, "adapter_model.safetensors")
            h, dat = st_read(p)
            st_write(p, h, dat, length=len(json.dumps(h)) + len(dat) + 100)
        case("bad_header", ["adapter_model.safetensors", "header"], header_bad)

        def int_tensor(t):
            t[self.lora_a] = t[self.lora_a].astype("int32")
        case("int_tensor", [self.lora_a, any_of("dtype", "I32", "int32")],
             set_tensors(int_tensor))
        # Training from a broken adapter (finetune.adapter is where a run starts).
        d = self.train_case("adapter.train_from_broken_adapter", g,
                            self.yaml(adapter="adapter"), ["adapter_config.json", BAD_JSON])
        a = self.copy(self.adapter, os.path.join(d, "adapter"))
        self.write(a, "adapter_config.json", acfg_text[:30])
