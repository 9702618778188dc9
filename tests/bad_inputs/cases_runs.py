"""Bad-input case groups for runs and commands: checkpoint (resume, trainer_state.json,
optimizer state, changed settings), cli (every subcommand's flags) and mpi (two ranks).
Part of make_cases.py.
"""
import json
import os
import shutil

from cases_common import BAD_JSON, any_of, line_of, mutate, st_load_numpy, st_save_numpy


class RunCases:
    """Case groups mixed into make_cases.Generator (see its helpers: case, write, copy,
    yaml, prep_argv, train_case, TRAIN, ...)."""

    # ---- groups -------------------------------------------------------------------------

    def group_checkpoint(self):
        g = "checkpoint"
        y3 = self.base_run_yaml.replace("  max_steps: 2", "  max_steps: 3")
        unchanged = ["run/config.yaml", "run/metrics.jsonl", "run/checkpoints", "run/adapter"]

        def case(cid, words, edit, yaml_text=None, exit=2, argv=None, **kw):
            kw.setdefault("unchanged", unchanged if exit else [])
            d = self.case("checkpoint." + cid, g, argv or self.TRAIN, exit=exit, words=words,
                          files={"run.yaml": yaml_text or y3}, **kw)
            r = self.copy(self.b("run"), os.path.join(d, "run"))
            edit(os.path.join(r, "checkpoints", "step-2"))
            return d

        def rm(name):
            return lambda s: os.remove(os.path.join(s, name))

        case("control_resume", [], lambda s: None, exit=0,
             post=[{"exists": "run/checkpoints/step-3/trainer_state.json"}])
        case("missing_optimizer_state", ["step-2", "optimizer"], rm("optimizer.safetensors"))

        def legacy_garbage(s):
            os.remove(os.path.join(s, "optimizer.safetensors"))
            open(os.path.join(s, "optimizer.pt"), "wb").write(b"PK\x03\x04 not a torch file")
        case("corrupt_optimizer_pt", ["optimizer.pt"], legacy_garbage,
             note="issue 15: a raw libtorch stack trace")
        case("missing_trainable", ["step-2", "trainable.safetensors"], rm("trainable.safetensors"))
        case("truncated_optimizer", ["optimizer.safetensors"],
             lambda s: open(os.path.join(s, "optimizer.safetensors"), "r+b").truncate(200))

        def opt_shape(s):
            p = os.path.join(s, "optimizer.safetensors")
            t = st_load_numpy(p)
            k = sorted(n for n in t if n.endswith(".exp_avg"))[0]
            t[k] = t[k].reshape(-1)[:5].copy()
            st_save_numpy(p, t, {"optimizer": "adamw"})
            self._opt_key = k
        d = case("optimizer_tensor_shape", ["optimizer.safetensors"], opt_shape)
        self.cases[-1]["words"].append(self._opt_key)

        def trainable_shape(s):
            p = os.path.join(s, "trainable.safetensors")
            t = st_load_numpy(p)
            k = sorted(t)[0]
            t[k] = t[k].reshape(-1)[:5].copy()
            st_save_numpy(p, t)
            self._tr_key = k
        case("trainable_tensor_shape", ["trainable.safetensors"], trainable_shape)
        self.cases[-1]["words"].append(self._tr_key)

        def state(fn):
            def f(s):
                p = os.path.join(s, "trainer_state.json")
                j = json.load(open(p))
                fn(j)
                self.write(s, "trainer_state.json", json.dumps(j, indent=2))
            return f
        case("state_broken_json", ["trainer_state.json", BAD_JSON],
             lambda s: self.write(s, "trainer_state.json", '{"format": "loom-trainer-state", '))
        case("state_missing_cursor", ["trainer_state.json", "cursor"],
             state(lambda j: j.pop("cursor")))
        case("state_bad_cursor", ["trainer_state.json", "cursor"],
             state(lambda j: j.__setitem__("cursor", {"epoch": "x", "bogus": [1]})))
        case("state_negative_step", ["trainer_state.json", "step"],
             state(lambda j: j.__setitem__("step", -5)))
        case("state_weights_string", ["trainer_state.json", "weights"],
             state(lambda j: j.__setitem__("weights", "1")))
        case("changed_lora_r", ["step-2", "finetune.lora.r",
                                any_of("4 -> 8", "4 → 8", "from 4 to 8", "4 to 8", "was 4")],
             lambda s: None, yaml_text=y3.replace("{r: 4,", "{r: 8,"),
             note="issue 15: the refusal named no setting; the run's config.yaml must stay")
        case("changed_seq_len", ["step-2", "data.seq_len"], lambda s: None,
             yaml_text=y3.replace("  seq_len: 64", "  seq_len: 32"))
        case("changed_method", ["step-2", "finetune.method"], lambda s: None,
             yaml_text=y3.replace("  method: lora", "  method: full"))
        case("changed_data", ["step-2", "data.train"], lambda s: None,
             yaml_text=y3.replace(self.train_h5, self.b("data", "train_othertok.h5")).replace(
                 "  packing: true", "  packing: true\n  allow_tokenizer_mismatch: true"))
        case("resume_named_missing", ["checkpoint.resume", "step-9"], lambda s: None,
             yaml_text=y3.replace("  resume: auto", "  resume: run/checkpoints/step-9"))
        d = case("rerun_bad_eval_data", ["data.eval", "eval.h5"], lambda s: None,
                 yaml_text=y3.replace(self.eval_h5, "eval.h5"),
                 note="a refused re-run into an existing run directory: its config.yaml stays")
        self.write(d, "eval.h5", "not hdf5")

    def group_cli(self):
        g = "cli"
        y = self.yaml(eval_=self.eval_h5)
        no_file_blame = [r"run\.yaml:\d+"]

        def c(cid, argv, words, exit=2, files=True, **kw):
            return self.case("cli." + cid, g, argv, exit=exit, words=words,
                             files={"run.yaml": y} if files else None, **kw)

        c("control_help", ["{trainer}", "--help"], ["prepare", "export"], exit=0)
        c("control_version", ["{trainer}", "--version"], ["Loom"], exit=0)
        c("control_set", ["{trainer}", "--config", "run.yaml", "--set", "train.lr=3e-4",
                          "--print-config"], ["0.0003"], exit=0)
        c("control_dry_run", ["{trainer}", "--config", "run.yaml", "--dry-run"], ["world:"],
          exit=0)
        for sub in ("prepare", "inspect", "eval", "export", "generate", "compare"):
            c(f"control_{sub}_help", ["{trainer}", sub, "--help"], [sub], exit=0)
        c("unknown_flag", ["{trainer}", "--config", "run.yaml", "--no-such-flag"],
          ["--no-such-flag"])
        c("no_config", ["{trainer}", "--dry-run"], ["--config"])
        c("config_missing", ["{trainer}", "--config", "no_such.yaml"], ["no_such.yaml"])
        c("unknown_subcommand", ["{trainer}", "prep", "--config", "run.yaml"], ["prep"])
        c("log_level_bad", ["{trainer}", "--config", "run.yaml", "--log-level", "loud"],
          ["--log-level", "loud"])
        c("set_typo_section", ["{trainer}", "--config", "run.yaml", "--set", "trian.lr=1e-3",
                               "--print-config"], ["--set trian.lr=1e-3", "trian"],
          forbid=no_file_blame, note="issue 15: blamed on a place in the config file")
        c("set_bad_target", ["{trainer}", "--config", "run.yaml", "--set",
                             "finetune.lora.targets=[q_proj,qq_proj]", "--print-config"],
          ["--set finetune.lora.targets=[q_proj,qq_proj]", "qq_proj"], forbid=no_file_blame,
          note="issue 15")
        c("set_no_equals", ["{trainer}", "--config", "run.yaml", "--set", "train.lr",
                            "--print-config"], ["--set train.lr"])
        c("set_bad_type", ["{trainer}", "--config", "run.yaml", "--set", "train.lr=abc",
                           "--print-config"], ["--set train.lr=abc", "train.lr"],
          forbid=no_file_blame)
        c("set_out_of_range", ["{trainer}", "--config", "run.yaml", "--set", "train.lr=2",
                               "--print-config"], ["--set train.lr=2", "train.lr"],
          forbid=no_file_blame)
        c("set_yaml_syntax", ["{trainer}", "--config", "run.yaml", "--set", "data.seq_len=[1",
                              "--print-config"], ["--set data.seq_len=[1"], forbid=no_file_blame)
        c("set_rank_weight", ["{trainer}", "--config", "run.yaml", "--set",
                              "cluster.ranks.0.weight=0", "--print-config"],
          ["--set cluster.ranks.0.weight=0", "weight"], forbid=no_file_blame)
        c("set_rank_index_missing", ["{trainer}", "--config", "run.yaml", "--set",
                                     "cluster.ranks.5.weight=2", "--print-config"],
          ["--set cluster.ranks.5.weight=2", "cluster.ranks"], forbid=no_file_blame)
        c("set_empty_key", ["{trainer}", "--config", "run.yaml", "--set", "=5",
                            "--print-config"], ["--set =5"])
        c("set_missing_model_dir", ["{trainer}", "--config", "run.yaml", "--set",
                                    "model.path=no_such_model"],
          ["--set model.path=no_such_model", "model.path"], forbid=no_file_blame,
          absent=["run/config.yaml"])
        c("prepare_missing_tokenizer_flag", ["{trainer}", "prepare", "--input",
                                             "{base}/inputs/text.txt", "--format", "text",
                                             "--output", "out.h5"], ["--tokenizer"],
          absent=["out.h5"])
        c("prepare_bad_format", self.prep_argv(["{base}/inputs/alpaca.jsonl"], "alpacca"),
          ["--format", "alpacca"], absent=["out.h5"])
        c("prepare_seq_len_not_number", self.prep_argv(["{base}/inputs/alpaca.jsonl"], "alpaca",
                                                       seq_len="abc"),
          ["--seq-len", "abc"], absent=["out.h5"])
        c("prepare_unknown_flag", self.prep_argv(["{base}/inputs/alpaca.jsonl"], "alpaca",
                                                 extra=["--max-len", "5"]),
          ["--max-len"], absent=["out.h5"])
        c("inspect_nothing", ["{trainer}", "inspect"], ["--model", "--data"])
        c("inspect_count_negative", ["{trainer}", "inspect", "--data", "{base}/data/train.h5",
                                     "--count", "-1"], ["--count"])
        c("inspect_color_bad", ["{trainer}", "inspect", "--data", "{base}/data/train.h5",
                                "--color", "maybe"], ["--color", "maybe"])
        c("inspect_sample_out_of_range", ["{trainer}", "inspect", "--data",
                                          "{base}/data/train.h5", "--sample", "99999"],
          ["--sample", "99999"])
        c("inspect_sample_negative", ["{trainer}", "inspect", "--data", "{base}/data/train.h5",
                                      "--sample", "-3"], ["--sample", "-3"])
        c("inspect_data_missing", ["{trainer}", "inspect", "--data", "no_such.h5"],
          ["no_such.h5", any_of("no such", "not found", "does not exist")])
        c("inspect_model_missing", ["{trainer}", "inspect", "--model", "no_such_model"],
          ["--model", "no_such_model"])
        c("inspect_config_bad", ["{trainer}", "inspect", "--model", "{base}/tiny/model",
                                 "--config", "bad.yaml"], ["bad.yaml", "train.lrr"],
          files=False)
        self.write(os.path.join(self.cases_dir, "cli.inspect_config_bad"), "bad.yaml",
                   mutate(y, "  lr: 1.0e-3", "  lrr: 1.0e-3"))
        c("eval_device_bad", self.EVAL[:-1] + ["gpu"], ["--device", "gpu"])
        c("eval_device_absent_cuda", self.EVAL[:-1] + ["cuda:9"], ["--device", "cuda:9"])
        c("eval_batch_size_zero", self.EVAL + ["--batch-size", "0"], ["--batch-size"])
        c("eval_dtype_bad", self.EVAL + ["--dtype", "fp8"], ["--dtype", "fp8"])
        c("eval_set_bad", self.EVAL + ["--set", "data.eval=[a,b]"],
          ["--set data.eval=[a,b]", "data.eval"], forbid=no_file_blame)
        c("eval_set_missing_file", self.EVAL + ["--set", "data.eval=no_such.h5"],
          ["--set data.eval=no_such.h5", "no_such.h5"], forbid=no_file_blame)
        self.case("cli.eval_no_eval_data", g, self.EVAL, words=["data.eval", "run.yaml"],
                  files={"run.yaml": self.yaml()})
        ex = ["{trainer}", "export", "--config", "run.yaml", "--out", "out"]
        exy = {"run.yaml": self.yaml(adapter=self.adapter)}
        self.case("cli.export_set_bad", g, ex + ["--set", "finetune.lora.r=0"],
                  words=["--set finetune.lora.r=0", "finetune.lora.r"], files=exy,
                  forbid=no_file_blame, absent=["out"])
        self.case("cli.export_set_missing_adapter", g, ex + ["--set", "finetune.adapter=no_such"],
                  words=["--set finetune.adapter=no_such", "no_such"], files=exy,
                  forbid=no_file_blame, absent=["out"])
        self.case("cli.export_max_shard_zero", g, ex + ["--merge", "--max-shard-size", "0"],
                  words=["--max-shard-size", "0"], files=exy, absent=["out", "out.tmp-*"],
                  note="issue 15: ended in an internal check")
        self.case("cli.export_max_shard_negative", g, ex + ["--merge", "--max-shard-size", "-5"],
                  words=["--max-shard-size"], files=exy, absent=["out"])
        self.case("cli.export_max_shard_unit", g, ex + ["--merge", "--max-shard-size", "2XB"],
                  words=["--max-shard-size", "2XB"], files=exy, absent=["out"])
        self.case("cli.control_export_shard_size", g, ex + ["--merge", "--max-shard-size", "100KB"],
                  exit=0, files=exy, post=[{"exists": "out/model.safetensors.index.json"}])
        d = self.case("cli.export_out_not_empty", g, ex, words=["--out", "--force"], files=exy,
                      unchanged=["out"])
        self.write(d, "out/keep.txt", "mine")
        self.case("cli.export_dtype_bad", g, ex + ["--merge", "--dtype", "fp8"],
                  words=["--dtype", "fp8"], files=exy, absent=["out"])
        self.case("cli.export_dtype_without_merge", g, ex + ["--dtype", "fp16"],
                  words=["--dtype"], files=exy, absent=["out"])
        self.case("cli.export_no_out", g, ex[:-2], words=["--out"], files=exy)
        d = self.case("cli.export_out_is_input", g, ["{trainer}", "export", "--config", "run.yaml",
                                                     "--merge", "--force", "--out", "adapter"],
                      words=["--out", "adapter"], files={"run.yaml": self.yaml(adapter="adapter")},
                      unchanged=["adapter"], note="--force must not replace what is read")
        self.copy(self.adapter, os.path.join(d, "adapter"))
        # trainer generate: its flags, its prompts file, and a control that answers.
        gen = ["{trainer}", "generate", "--model", "{base}/tiny/model", "--max-new-tokens", "4",
               "--device", "cpu"]
        self.case("cli.control_generate", g, gen + ["--prompts", "p.jsonl", "--output", "a.jsonl"],
                  exit=0, files={"p.jsonl": '{"prompt": "hi"}\n{"instruction": "Say yes."}\n'},
                  post=[{"exists": "a.jsonl"}])
        for flag, value in (("--top-p", "0"), ("--top-p", "1.5"), ("--temperature", "-1"),
                            ("--max-new-tokens", "0"), ("--repetition-penalty", "0"),
                            ("--top-k", "-2"), ("--batch-size", "0"), ("--dtype", "fp8"),
                            ("--device", "gpu"), ("--chat-template", "mistral")):
            base = list(gen)
            if flag in base:  # given once: the bad value replaces the control's
                base[base.index(flag) + 1] = value
                argv = base + ["--prompt", "hi"]
            else:
                argv = base + ["--prompt", "hi", flag, value]
            c(f"generate_{flag.strip('-').replace('-', '_')}_{value.replace('.', '_').replace('-', 'm')}",
              argv, [flag, value], files=False)
        c("generate_no_prompt", gen, ["--prompt"], files=False)
        c("generate_no_model", ["{trainer}", "generate", "--prompt", "hi"], ["--model", "--config"],
          files=False)
        c("generate_model_missing", ["{trainer}", "generate", "--model", "no_such_model",
                                     "--prompt", "hi"], ["--model", "no_such_model"], files=False)
        c("generate_adapter_missing", gen + ["--adapter", "no_such_adapter", "--prompt", "hi"],
          ["--adapter", "no_such_adapter"], files=False)
        c("generate_stop_empty", gen + ["--prompt", "hi", "--stop", ""], ["--stop"], files=False)
        for cid, content, words in (
                ("generate_prompts_bad_json", '{"prompt": "a"}\n{"prompt": \n',
                 ["p.jsonl:2", "malformed JSON"]),
                ("generate_prompts_no_field", '{"question": "a"}\n', ["p.jsonl:1", "prompt"]),
                ("generate_prompts_not_string", '{"prompt": 5}\n', ["p.jsonl:1", "prompt"]),
                ("generate_prompts_bad_role", '{"messages": [{"role": "robot", "content": "x"}]}\n',
                 ["p.jsonl:1", "robot"]),
                ("generate_prompts_empty", "\n\n", ["p.jsonl", "no prompts"]),
                ("generate_prompts_utf16", "\ufeff{\"prompt\": \"a\"}\n".encode("utf-16-le"),
                 ["p.jsonl", "UTF-16"])):
            self.case("cli." + cid, g, gen + ["--prompts", "p.jsonl", "--output", "a.jsonl"],
                      words=words, files={"p.jsonl": content}, absent=["a.jsonl"])
        # trainer compare: a control that writes the report, and what it refuses (no report).
        cmp = ["{trainer}", "compare", "--model", "{base}/tiny/model", "--device", "cpu", "--out",
               "out"]
        ref = {"p.jsonl": '{"prompt": "hi", "reference": "hello"}\n'}
        self.case("cli.control_compare", g, cmp + ["--adapter", "{base}/run/adapter", "--prompts",
                                                    "p.jsonl", "--max-new-tokens", "4"], exit=0,
                  files=ref,
                  post=[{"exists": "out/report.html"}, {"exists": "out/report.json"}])
        for cid, extra, words, files in (
                ("compare_max_new_tokens_0", ["--adapter", "{base}/run/adapter", "--prompts",
                                              "p.jsonl", "--max-new-tokens", "0"],
                 ["--max-new-tokens", "0"], ref),
                ("compare_nothing_after", ["--prompts", "p.jsonl", "--max-new-tokens", "4"], ["--adapter", "--after-model"],
                 ref),
                ("compare_adapter_missing", ["--adapter", "no_such_adapter", "--prompts", "p.jsonl"],
                 ["--adapter", "no_such_adapter"], ref),
                ("compare_adapter_is_a_model", ["--adapter", "{base}/tiny/model", "--prompts",
                                                "p.jsonl"], ["--adapter", "adapter_config.json"],
                 ref),
                ("compare_both_afters", ["--adapter", "{base}/run/adapter", "--after-model",
                                         "{base}/tiny/model", "--prompts", "p.jsonl"],
                 ["--adapter", "--after-model"], ref),
                ("compare_prompts_bad_line", ["--adapter", "{base}/run/adapter", "--prompts",
                                              "p.jsonl"], ["p.jsonl:2", "reference"],
                 {"p.jsonl": '{"prompt": "hi"}\n{"prompt": "x", "reference": 3}\n'}),
                ("compare_out_is_a_file", ["--adapter", "{base}/run/adapter", "--prompts",
                                           "p.jsonl"], ["--out", "out", "not a folder"],
                 dict(ref, out="a file")),
                ("compare_thinking_bad", ["--adapter", "{base}/run/adapter", "--prompts", "p.jsonl",
                                          "--thinking", "maybe"], ["--thinking", "maybe"], ref)):
            self.case("cli." + cid, g, cmp + extra, words=words, files=files,
                      absent=[] if cid == "compare_out_is_a_file" else ["out"])
        # train.eval_prompts: a missing file, and a bad line refused at set-up (no run written).
        self.case("cli.eval_prompts_missing", g,
                  ["{trainer}", "--config", "run.yaml", "--set", "train.eval_prompts=no_such.jsonl"],
                  words=["train.eval_prompts", "no_such.jsonl"], files={"run.yaml": self.yaml()},
                  absent=["run/config.yaml", "run/metrics.jsonl"])
        self.case("cli.eval_prompts_bad_line", g,
                  ["{trainer}", "--config", "run.yaml", "--set", "train.eval_prompts=p.jsonl"],
                  words=["train.eval_prompts", "p.jsonl:1", "prompt"],
                  files={"run.yaml": self.yaml(), "p.jsonl": '{"prompt": 5}\n'},
                  absent=["run/config.yaml", "run/metrics.jsonl"])
        self.case("cli.export_no_adapter", g, ex, words=["finetune.adapter", "run.output_dir"],
                  files={"run.yaml": self.yaml()}, absent=["out"])
        self.case("cli.export_merge_full", g, ex + ["--merge"], words=["--merge",
                                                                       "finetune.method"],
                  files={"run.yaml": self.yaml(method="full")}, absent=["out"])
        self.case("cli.control_export_merge", g, ex + ["--merge"], exit=0, files=exy,
                  post=[{"exists": "out/config.json"}])

    def group_mpi(self):
        g = "mpi"
        import h5py
        late = self.n_train - 2
        needs = ["mpiexec"]

        def case(cid, words, yaml_text, exit=2, **kw):
            kw.setdefault("absent", ["run/config.yaml", "run/checkpoints"] if exit else [])
            return self.case("mpi." + cid, g, self.TRAIN2, exit=exit, words=words, needs=needs,
                             files={"run.yaml": yaml_text}, timeout=180, **kw)

        case("control_two_ranks", [], self.yaml(), exit=0,
             post=[{"exists": "run/adapter/adapter_config.json"}])
        for cid, pos, value, words in (
                ("oov_sample_one_rank", 1, self.vocab, [any_of(str(self.vocab), "vocab")]),
                ("negative_sample_one_rank", 2, -9, ["-9"])):
            d = case(cid, ["data.train", "train.h5", f"sample {late}"] + words,
                     self.yaml(train="train.h5"),
                     note="a bad sample that only one rank would read")
            p = shutil.copyfile(self.train_h5, os.path.join(d, "train.h5"))
            with h5py.File(p, "r+") as h:
                h["tokens"][int(h["offsets"][late]) + pos] = value
        d = case("loss_tokens_one_rank", ["data.train", "train.h5", f"sample {late}",
                                          "loss_tokens"], self.yaml(train="train.h5"))
        with h5py.File(shutil.copyfile(self.train_h5, os.path.join(d, "train.h5")), "r+") as h:
            h["loss_tokens"][late] = h["loss_tokens"][late] + 2
            h.attrs["num_loss_tokens"] = h.attrs["num_loss_tokens"] + 2
        case("train_missing", ["data.train", "no_such.h5"], self.yaml(train="no_such.h5"))
        base = self.yaml()
        t = mutate(base, "  lr: 1.0e-3", "  lrr: 1.0e-3")
        case("config_unknown_key", [f"run.yaml:{line_of(t, 'lrr')}:", "train.lrr"], t)
        t = mutate(base, "      micro_batch: 2",
                   "      micro_batch: 2\n    - match: {local_rank: 1}\n      device: \"cuda:7\"")
        case("one_rank_bad_device", ["cluster.ranks[1].device", "cuda:7"], t)
        d = case("eval_bad_on_open", ["data.eval", "eval.h5"], self.yaml(eval_="eval.h5"))
        self.write(d, "eval.h5", "not hdf5")
        d = case("model_truncated", ["model.safetensors"], self.yaml(model="model"))
        m = self.model_copy(d)
        p = os.path.join(m, "model.safetensors")
        open(p, "r+b").truncate(os.path.getsize(p) // 2)
        y3 = self.base_run_yaml.replace("  max_steps: 2", "  max_steps: 3")
        d = case("resume_changed_r", ["step-2", "finetune.lora.r"],
                 y3.replace("{r: 4,", "{r: 8,"), absent=[],
                 unchanged=["run/config.yaml", "run/metrics.jsonl", "run/checkpoints"])
        self.copy(self.b("run"), os.path.join(d, "run"))
        d = case("resume_missing_optimizer", ["step-2", "optimizer"], y3, absent=[],
                 unchanged=["run/config.yaml", "run/metrics.jsonl", "run/checkpoints"])
        self.copy(self.b("run"), os.path.join(d, "run"))
        os.remove(os.path.join(d, "run", "checkpoints", "step-2", "optimizer.safetensors"))
        d = case("other_tokenizer_data", ["data.train", "tokenizer", "allow_tokenizer_mismatch"],
                 self.yaml(train=self.b("data", "train_othertok.h5")))
