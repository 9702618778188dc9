"""Bad-input case groups for what a run reads first: config (run.yaml), prepare (every input
format and file kind, encodings, broken records, flags) and tokenizer. Part of make_cases.py.
"""
import json
import os
import shutil

from cases_common import BAD_JSON, BAD_YAML, any_of, line_of, mutate


class InputCases:
    """Case groups mixed into make_cases.Generator (see its helpers: case, write, copy,
    yaml, prep_argv, train_case, TRAIN, ...)."""

    # ---- groups -------------------------------------------------------------------------

    def group_config(self):
        g = "config"
        base = self.yaml()
        self.case("config.control", g, self.PRINT, exit=0, words=["output_dir: run"],
                  files={"run.yaml": base})
        self.case("config.control_bom", g, self.PRINT, exit=0, words=["output_dir: run"],
                  files={"run.yaml": b"\xef\xbb\xbf" + base.encode()},
                  note="a UTF-8 BOM before the YAML is not part of the config: accepted")

        def bad(cid, text, words, argv=None, **kw):
            self.case("config." + cid, g, argv or self.PRINT, words=words,
                      files={"run.yaml": text}, **kw)

        def at(text, needle, nth=1):
            return f"run.yaml:{line_of(text, needle, nth)}:"

        t = mutate(base, "  seq_len: 64", "  seq_len: [64")
        bad("yaml_unclosed_bracket", t, [any_of(at(t, "seq_len: [64"), at(t, "packing:")), BAD_YAML])
        t = mutate(base, "  lr: 1.0e-3", "\tlr: 1.0e-3")
        bad("yaml_tab_indent", t, [at(t, "\tlr"), BAD_YAML])
        t = mutate(base, "  lr: 1.0e-3", "  lr: 1.0e-3\n  lr: 2.0e-3")
        bad("yaml_duplicate_key", t, [at(t, "lr: 2.0e-3"), "train.lr", "duplicate"],
            note="a repeated key must not silently win")
        t = mutate(base, "  name: bad-inputs", "  name: 'bad-inputs")
        bad("yaml_unclosed_quote", t, [at(t, "'bad-inputs"), BAD_YAML + ["quote"]])
        bad("yaml_top_level_list", "- run\n- model\n", ["run.yaml", any_of("mapping", "map")])
        bad("yaml_empty_file", "", ["run.yaml", any_of("empty", "missing required")])
        bad("yaml_binary_garbage", b"\x00\x01\x02\xff\xfe garbage\n",
            ["run.yaml", BAD_YAML + ["UTF-8", "binary", "encoding"]], forbid_bytes=["fffe"])
        t = mutate(base, "train:\n", "trian: {}\ntrain:\n")
        bad("unknown_section", t, [at(t, "trian"), "trian", "did you mean 'train'"])
        t = mutate(base, "  lr: 1.0e-3", "  lrr: 1.0e-3")
        bad("unknown_key", t, [at(t, "lrr"), "train.lrr", "did you mean 'lr'"])
        t = mutate(base, "{r: 4,", "{rank: 4,")
        bad("unknown_lora_key", t, [at(t, "rank: 4"), "finetune.lora.rank"])
        t = mutate(base, "      micro_batch: 2", "      micro_batches: 2")
        bad("unknown_rank_key", t, [at(t, "micro_batches"), "cluster.ranks[0].micro_batches"])
        t = mutate(base, "    - device: cpu", "    - device: cpu\n      match: {hostname: a}")
        bad("unknown_match_key", t, [at(t, "hostname"), "cluster.ranks[0].match.hostname"])
        t = mutate(base, "  seq_len: 64", "  seq_len: long")
        bad("type_seq_len", t, [at(t, "seq_len"), "data.seq_len", "integer"])
        t = mutate(base, "  lr: 1.0e-3", "  lr: fast")
        bad("type_lr", t, [at(t, "lr: fast"), "train.lr", "number"])
        t = mutate(base, "  packing: true", "  packing: maybe")
        bad("type_packing", t, [at(t, "packing"), "data.packing", "true or false"])
        t = mutate(base, "targets: all-linear", "targets: 5")
        bad("type_targets", t, [at(t, "targets"), "finetune.lora.targets"])
        t = mutate(base, "  max_steps: 1", "  max_steps: 2.5")
        bad("type_max_steps_float", t, [at(t, "max_steps"), "train.max_steps", "integer"])
        t = mutate(base, f"model:\n  path: {self.model}\n  dtype: fp32\n", "model: qwen3\n")
        bad("type_section_scalar", t, [at(t, "model: qwen3"), "model",
                                       any_of("mapping", "section", "map")])
        t = mutate(base, "    - device: cpu\n      micro_batch: 2", "    device: cpu")
        bad("type_ranks_not_list", t, [any_of(at(t, "ranks:"), at(t, "    device: cpu")),
                                       "cluster.ranks", "list"])
        t = mutate(base, "  seed: 1234", "  seed: 99999999999999999999999")
        bad("range_seed_overflow", t, [at(t, "seed"), "run.seed"])
        t = mutate(base, "  seed: 1234", "  seed: -1")
        bad("range_seed_negative", t, [at(t, "seed"), "run.seed"])
        t = mutate(base, "  seq_len: 64", "  seq_len: 4")
        bad("range_seq_len", t, [at(t, "seq_len"), "data.seq_len", "16"])
        t = mutate(base, "  lr: 1.0e-3", "  lr: -0.1")
        bad("range_lr_negative", t, [at(t, "lr:"), "train.lr"])
        t = mutate(base, "  lr: 1.0e-3", "  lr: .nan")
        bad("range_lr_nan", t, [at(t, "lr:"), "train.lr"])
        t = mutate(base, "{r: 4,", "{r: 0,")
        bad("range_lora_r_zero", t, [at(t, "r: 0"), "finetune.lora.r"])
        t = mutate(base, "dropout: 0.0", "dropout: 1.5")
        bad("range_dropout", t, [at(t, "dropout"), "finetune.lora.dropout"])
        t = mutate(base, "  max_steps: 1", "  max_steps: 1\n  warmup_steps: 50")
        bad("range_warmup_past_end", t, [at(t, "warmup_steps"), "train.warmup_steps"])
        t = mutate(base, "  keep: 2", "  keep: 0")
        bad("range_keep_zero", t, [at(t, "keep"), "checkpoint.keep"])
        t = mutate(base, "      micro_batch: 2", "      micro_batch: 0")
        bad("range_micro_batch_zero", t, [at(t, "micro_batch"), "cluster.ranks[0].micro_batch"])
        t = mutate(base, "      micro_batch: 2", "      micro_batch: 2\n      weight: 0")
        bad("range_weight_zero", t, [at(t, "weight"), "cluster.ranks[0].weight"])
        t = mutate(base, "      micro_batch: 2", "      micro_batch: 2\n      loss_chunk_tokens: 8")
        bad("range_loss_chunk", t, [at(t, "loss_chunk"), "cluster.ranks[0].loss_chunk_tokens"])
        t = mutate(base, "  collective_timeout_s: 120", "  collective_timeout_s: -1")
        bad("range_timeout_negative", t, [at(t, "collective_timeout_s"),
                                          "cluster.collective_timeout_s"])
        t = mutate(base, "  dtype: fp32", "  dtype: bfloat16")
        bad("enum_dtype", t, [at(t, "bfloat16"), "model.dtype"])
        t = mutate(base, "  method: lora", "  method: lorax")
        bad("enum_method", t, [at(t, "lorax"), "finetune.method", "did you mean 'lora'"])
        t = mutate(base, "  log_every: 1", "  log_every: 1\n  lr_schedule: cosin")
        bad("enum_lr_schedule", t, [at(t, "cosin"), "train.lr_schedule"])
        t = mutate(base, "  log_every: 1", "  log_every: 1\n  profile_steps: 500")
        bad("range_profile_steps", t, [at(t, "500"), "train.profile_steps", "[0, 100]"])
        t = mutate(base, "  log_every: 1", "  log_every: 1\n  profile_steps: 2")
        bad("profile_after_max_steps", t, [at(t, "profile_steps"), "train.profile_steps",
                                           "steps 3-4 end after max_steps (1)"])
        t = mutate(base, "  backend: auto", "  backend: gloo")
        bad("enum_backend", t, [at(t, "gloo"), "cluster.backend"])
        t = mutate(base, "  balance: static", "  balance: dynamic")
        bad("enum_balance", t, [at(t, "dynamic"), "cluster.balance"])
        t = mutate(base, "targets: all-linear", "targets: [q_proj, qq_proj]")
        bad("enum_lora_target", t, [at(t, "qq_proj"), "finetune.lora.targets[1]", "qq_proj"])
        t = mutate(base, "    - device: cpu", "    - device: gpu0")
        bad("enum_device", t, [at(t, "gpu0"), "cluster.ranks[0].device"])
        t = mutate(base, "  max_steps: 1", "  max_steps: 1\n  global_batch_size: 8")
        bad("exclusive_batch_keys", t, [at(t, "global_batch_size"), "train.global_batch_size"])
        t = mutate(base, "  max_steps: 1", "  max_steps: 1\n  epochs: 2")
        bad("exclusive_steps_epochs", t, [at(t, "epochs"), "train.epochs"])
        t = mutate(base, "  global_batch_tokens: 256\n", "")
        bad("missing_batch_key", t, ["run.yaml", "train.global_batch_tokens"])
        t = mutate(base, "  max_steps: 1\n", "")
        bad("missing_steps_key", t, ["run.yaml", "train.max_steps"])
        t = mutate(base, f"  path: {self.model}\n", "")
        bad("missing_model_path", t, ["run.yaml", "model.path"])
        t = mutate(base, f"  train: {self.train_h5}\n", "")
        bad("missing_data_train", t, ["run.yaml", "data.train"])
        t = mutate(base, "  method: lora", "  method: full\n  adapter: somewhere")
        bad("adapter_with_full", t, [at(t, "adapter:"), "finetune.adapter"])
        t = mutate(base, "  output_dir: run", "  output_dir: runs/${LOOM_BAD_INPUTS_UNSET_VAR}")
        bad("unset_env_variable", t, [at(t, "output_dir"), "run.output_dir",
                                      "LOOM_BAD_INPUTS_UNSET_VAR"])
        t = mutate(base, "  resume: auto", "  resume: nowhere")
        bad("resume_nowhere", t, [at(t, "nowhere"), "checkpoint.resume", "nowhere"],
            argv=self.TRAIN, absent=["run/config.yaml"])
        # Files the config names that are missing or of the wrong kind: the training run.
        t = mutate(base, f"  path: {self.model}", "  path: no_such_model")
        bad("file_model_missing", t, [at(t, "no_such_model"), "model.path", "no_such_model"],
            argv=self.TRAIN, absent=["run/config.yaml"])
        t = mutate(base, f"  path: {self.model}", "  path: run.yaml")
        bad("file_model_is_file", t, [at(t, "path: run.yaml"), "model.path"],
            argv=self.TRAIN, absent=["run/config.yaml"])
        t = mutate(base, f"  train: {self.train_h5}", "  train: no_such.h5")
        bad("file_train_missing", t, [at(t, "no_such.h5"), "data.train", "no_such.h5"],
            argv=self.TRAIN, absent=["run/config.yaml"])
        t = mutate(base, f"  train: {self.train_h5}", "  train: .")
        bad("file_train_is_dir", t, [at(t, "train: ."), "data.train"],
            argv=self.TRAIN, absent=["run/config.yaml"])
        t = mutate(base, "  seq_len: 64", "  eval: no_such_eval.h5\n  seq_len: 64")
        bad("file_eval_missing", t, [at(t, "no_such_eval.h5"), "data.eval", "no_such_eval.h5"],
            argv=self.TRAIN, absent=["run/config.yaml"])
        t = mutate(base, "  lora:", "  adapter: no_such_adapter\n  lora:")
        bad("file_adapter_missing", t, [at(t, "no_such_adapter"), "finetune.adapter",
                                        "no_such_adapter"], argv=self.TRAIN,
            absent=["run/config.yaml"])
        t = mutate(base, "  output_dir: run", "  output_dir: run.yaml")
        bad("file_output_dir_is_file", t, [at(t, "output_dir"), "run.output_dir"],
            argv=self.TRAIN, unchanged=["run.yaml"])

    def group_prepare(self):
        g = "prepare"
        inp = self.b("inputs")
        alpaca = open(os.path.join(inp, "alpaca.jsonl"), "rb").read()
        alpaca_lines = alpaca.decode().splitlines(keepends=True)
        text = open(os.path.join(inp, "text.txt"), "rb").read()
        ref_alpaca = "{base}/data/ref_alpaca.h5"

        def bad(cid, name, content, fmt, words, extra=(), **kw):
            self.case("prepare." + cid, g, self.prep_argv([name], fmt, extra=extra), words=words,
                      files={name: content}, absent=["out.h5", "val.h5"], **kw)

        def jl(lines):
            return "".join(lines)

        # Controls: every format and file kind.
        for cid, src, fmt in (("control_alpaca_jsonl", "alpaca.jsonl", "alpaca"),
                              ("control_alpaca_json", "alpaca.json", "alpaca"),
                              ("control_chat_jsonl", "chat.jsonl", "chat"),
                              ("control_chat_json", "chat.json", "chat"),
                              ("control_text_jsonl", "text.jsonl", "text"),
                              ("control_text_txt", "text.txt", "text")):
            self.case("prepare." + cid, g, self.prep_argv(["{base}/inputs/" + src], fmt), exit=0,
                      post=[{"exists": "out.h5"}])
        self.case("prepare.control_template", g, self.prep_argv(
            ["{base}/inputs/template.jsonl"], "template", extra=[
                "--prompt-template", "Question: {Question}\\n### Answer:\\n",
                "--completion-template", "{Response}"]), exit=0, post=[{"exists": "out.h5"}])

        # Encodings.
        self.case("prepare.bom_txt_stripped", g, self.prep_argv(["in.txt"], "text"), exit=0,
                  files={"in.txt": b"\xef\xbb\xbf" + text},
                  post=[{"h5_tokens_equal": ["out.h5", "{base}/data/ref_text.h5"]}],
                  note="a UTF-8 BOM is not text: the tokens must equal those of the file without it")
        self.case("prepare.bom_jsonl_stripped", g, self.prep_argv(["in.jsonl"], "alpaca"), exit=0,
                  files={"in.jsonl": b"\xef\xbb\xbf" + alpaca},
                  post=[{"h5_tokens_equal": ["out.h5", ref_alpaca]}])
        self.case("prepare.bom_json_array_stripped", g, self.prep_argv(["in.json"], "chat"),
                  exit=0, files={"in.json": b"\xef\xbb\xbf" + open(
                      os.path.join(inp, "chat.json"), "rb").read()},
                  post=[{"h5_tokens_equal": ["out.h5", "{base}/data/ref_chat.h5"]}])
        self.case("prepare.crlf_jsonl", g, self.prep_argv(["in.jsonl"], "alpaca"), exit=0,
                  files={"in.jsonl": alpaca.replace(b"\n", b"\r\n")},
                  post=[{"h5_tokens_equal": ["out.h5", ref_alpaca]}])
        bad("utf16_jsonl", "in.jsonl", alpaca.decode().encode("utf-16"), "alpaca",
            ["in.jsonl", "UTF-16"])
        bad("utf16_txt", "in.txt", text.decode().encode("utf-16"), "text", ["in.txt", "UTF-16"])
        bad("utf16be_json", "in.json", open(os.path.join(inp, "alpaca.json")).read().encode(
            "utf-16-be"), "alpaca", ["in.json", any_of("UTF-16", "UTF-8", "encoding")])
        bad("utf16le_no_bom_jsonl", "in.jsonl", alpaca.decode().encode("utf-16-le"), "alpaca",
            ["in.jsonl", any_of("UTF-16", "UTF-8", "encoding")])
        bad("utf32_jsonl", "in.jsonl", alpaca.decode().encode("utf-32"), "alpaca",
            ["in.jsonl", any_of("UTF-32", "UTF-16", "UTF-8", "encoding")])
        t = alpaca_lines[:]
        t[1] = t[1].replace('"output": "', '"output": "\udcff', 1)
        raw = jl(t).encode("utf-8", "surrogateescape")
        bad("raw_ff_jsonl", "in.jsonl", raw, "alpaca", ["in.jsonl:2", "UTF-8"], forbid_bytes=["ff"])
        lines = text.split(b"\n")
        lines[2] = lines[2] + b" \xff\xfe"
        bad("raw_ff_txt", "in.txt", b"\n".join(lines), "text", ["in.txt:3", "UTF-8"],
            forbid_bytes=["ff"])
        js = open(os.path.join(inp, "alpaca.json"), "rb").read().replace(b'"output": "', b'"output": "\xff', 1)
        bad("raw_ff_json_array", "in.json", js, "alpaca", ["in.json", "UTF-8"], forbid_bytes=["ff"])
        t = alpaca_lines[:]
        t[1] = t[1].replace('"output": "', '"output": "\\ud800', 1)
        bad("lone_surrogate_escape", "in.jsonl", jl(t), "alpaca",
            ["in.jsonl:2", any_of("surrogate", "UTF-16", "\\ud800", "UTF-8")])
        t = alpaca_lines[:]
        t[1] = t[1].replace('"output": "', '"output": "\xc3(', 1)
        bad("overlong_utf8_jsonl", "in.jsonl", jl(t).encode("utf-8").replace(
            "\xc3(".encode(), b"\xc0\xaf", 1), "alpaca", ["in.jsonl:2", "UTF-8"],
            forbid_bytes=["c0af"])

        # Broken records.
        t = alpaca_lines[:]
        t[2] = t[2][:len(t[2]) // 2] + "\n"
        bad("broken_json_line", "in.jsonl", jl(t), "alpaca", ["in.jsonl:3", BAD_JSON])
        t = alpaca_lines[:]
        t[3] = t[3].rstrip("\n") + " trailing\n"
        bad("trailing_garbage_line", "in.jsonl", jl(t), "alpaca", ["in.jsonl:4", BAD_JSON])
        t = alpaca_lines[:]
        t[1] = json.dumps({"instruction": "Add 1 and 2."}) + "\n"
        bad("alpaca_missing_output", "in.jsonl", jl(t), "alpaca", ["in.jsonl:2", "output"])
        t = alpaca_lines[:]
        t[1] = json.dumps({"instruction": "Add 1 and 2.", "output": 3}) + "\n"
        bad("alpaca_output_number", "in.jsonl", jl(t), "alpaca", ["in.jsonl:2", "output", "string"])
        t = alpaca_lines[:]
        t[4] = json.dumps({"instruction": None, "output": "x"}) + "\n"
        bad("alpaca_instruction_null", "in.jsonl", jl(t), "alpaca", ["in.jsonl:5", "instruction"])
        t = alpaca_lines[:]
        t[1] = json.dumps({"instruction": "x", "input": ["a"], "output": "y"}) + "\n"
        bad("alpaca_input_list", "in.jsonl", jl(t), "alpaca", ["in.jsonl:2", "input"])
        t = alpaca_lines[:]
        t[1] = "[1, 2, 3]\n"
        bad("record_not_object", "in.jsonl", jl(t), "alpaca", ["in.jsonl:2", "object"])
        t = alpaca_lines[:]
        t[20] = json.dumps({"instruction": "x"}) + "\n"
        bad("bad_field_late_threads", "in.jsonl", jl(t * 4), "alpaca", ["in.jsonl:21", "output"],
            extra=["--threads", "2"], note="several threads: the first bad line is named")
        recs = json.loads(open(os.path.join(inp, "alpaca.json")).read())
        r2 = [dict(r) for r in recs]
        del r2[1]["output"]
        bad("json_array_missing_field", "in.json", json.dumps(r2), "alpaca",
            ["in.json", any_of("in.json[1]", "element 1", "record 2", "item 1", "index 1"),
             "output"])
        bad("json_array_truncated", "in.json", json.dumps(recs)[:300], "alpaca",
            ["in.json", BAD_JSON])
        bad("json_object_not_array", "in.json", json.dumps({"records": recs}, indent=1),
            "alpaca", ["in.json:1", BAD_JSON + ["array"]],
            note="a pretty-printed {\"records\": [...]} wrapper, a common export shape")
        chat_lines = open(os.path.join(inp, "chat.jsonl")).read().splitlines(keepends=True)
        t = chat_lines[:]
        t[1] = json.dumps({"messages": [{"role": "robot", "content": "hi"},
                                        {"role": "assistant", "content": "x"}]}) + "\n"
        bad("chat_bad_role", "in.jsonl", jl(t), "chat", ["in.jsonl:2", "role", "robot"])
        t = chat_lines[:]
        t[2] = json.dumps({"messages": "hello"}) + "\n"
        bad("chat_messages_not_list", "in.jsonl", jl(t), "chat", ["in.jsonl:3", "messages"])
        t = chat_lines[:]
        t[1] = json.dumps({"messages": [{"role": "user"}, {"role": "assistant",
                                                            "content": "x"}]}) + "\n"
        bad("chat_missing_content", "in.jsonl", jl(t), "chat", ["in.jsonl:2", "content"])
        t = chat_lines[:]
        t[1] = json.dumps({"conversation": []}) + "\n"
        bad("chat_missing_messages", "in.jsonl", jl(t), "chat", ["in.jsonl:2", "messages"])
        cj = [dict(c) for c in self.chat]
        cj[3] = {"messages": [{"role": "user", "content": 7}]}
        bad("chat_json_content_number", "in.json", json.dumps(cj), "chat",
            ["in.json", any_of("in.json[3]", "element 3", "record 4", "index 3"), "content"])
        text_lines = open(os.path.join(inp, "text.jsonl")).read().splitlines(keepends=True)
        t = text_lines[:]
        t[1] = json.dumps({"txt": "hello"}) + "\n"
        bad("text_missing_field", "in.jsonl", jl(t), "text", ["in.jsonl:2", "text"])
        t = text_lines[:]
        t[5] = json.dumps({"text": 42}) + "\n"
        bad("text_field_number", "in.jsonl", jl(t), "text", ["in.jsonl:6", "text"])
        tl = open(os.path.join(inp, "template.jsonl")).read().splitlines(keepends=True)
        t = tl[:]
        t[1] = json.dumps({"Response": "x"}) + "\n"
        tmpl = ["--prompt-template", "Question: {Question}\\n", "--completion-template",
                "{Response}"]
        bad("template_record_lacks_field", "in.jsonl", jl(t), "template",
            ["in.jsonl:2", "Question"], extra=tmpl)
        bad("template_unclosed_placeholder", "in.jsonl", jl(tl), "template",
            ["--prompt-template", any_of("{Question", "character 3", "closing")],
            extra=["--prompt-template", "Q: {Question", "--completion-template", "{Response}"])
        bad("template_without_templates", "in.jsonl", jl(tl), "template",
            ["--prompt-template"])
        bad("txt_with_alpaca_format", "in.txt", text, "alpaca", ["in.txt", "alpaca"])
        t = alpaca_lines[:]
        t[1] = "{oops\n"
        self.case("prepare.second_input_bad", g, self.prep_argv(
            ["{base}/inputs/alpaca.jsonl", "in2.jsonl"], "alpaca"), words=["in2.jsonl:2", BAD_JSON],
            files={"in2.jsonl": jl(t)}, absent=["out.h5"],
            note="several inputs: the message names the one that is broken")

        # Empty inputs.
        bad("empty_jsonl", "in.jsonl", b"", "alpaca", ["in.jsonl", "empty"])
        bad("empty_txt", "in.txt", b"", "text", ["in.txt", "empty"])
        bad("blank_lines_jsonl", "in.jsonl", b"\n\n   \n", "alpaca",
            ["in.jsonl", any_of("empty", "no records")])
        bad("empty_json_array", "in.json", b"[]\n", "alpaca",
            ["in.json", any_of("empty", "no records")])
        bad("bom_only_jsonl", "in.jsonl", b"\xef\xbb\xbf", "alpaca",
            ["in.jsonl", any_of("empty", "no records")])

        # Files and flags.
        self.case("prepare.input_missing", g, self.prep_argv(["no_such.jsonl"], "alpaca"),
                  words=["no_such.jsonl"], absent=["out.h5"])
        d = self.case("prepare.input_is_dir", g, self.prep_argv(["somedir"], "alpaca"),
                      words=["somedir", any_of("not a file", "folder", "directory")],
                      absent=["out.h5"])
        os.makedirs(os.path.join(d, "somedir"))
        self.case("prepare.output_is_input", g, self.prep_argv(["in.jsonl"], "alpaca",
                                                                out="in.jsonl"),
                  words=["in.jsonl"], files={"in.jsonl": alpaca}, unchanged=["in.jsonl"])
        d = self.case("prepare.existing_output_kept", g, self.prep_argv(["in.jsonl"], "alpaca"),
                      words=["in.jsonl:3", BAD_JSON], unchanged=["out.h5"],
                      files={"in.jsonl": jl(alpaca_lines[:2] + ["{oops\n"] + alpaca_lines[3:])},
                      note="a refused prepare leaves the previous output as it was")
        shutil.copyfile(self.b("data", "ref_alpaca.h5"), os.path.join(d, "out.h5"))
        for cid, extra, words in (
                ("seq_len_one", [], ["--seq-len", "1"]),
                ("val_fraction_range", ["--val-fraction", "1.5", "--val-output", "val.h5"],
                 ["--val-fraction"]),
                ("val_fraction_without_output", ["--val-fraction", "0.1"], ["--val-output"]),
                ("on_overflow_bad", ["--on-overflow", "keep"], ["--on-overflow", "keep"]),
                ("threads_negative", ["--threads", "-1"], ["--threads"]),
                ("chat_template_bad", ["--chat-template", "mistral"],
                 ["--chat-template", "mistral"]),
                ("chat_template_for_text", ["--chat-template", "qwen"], ["--chat-template"]),
                ("same_val_output", ["--val-fraction", "0.2", "--val-output", "out.h5"],
                 ["--val-output"])):
            fmt = "text" if cid == "chat_template_for_text" else "alpaca"
            src = "{base}/inputs/" + ("text.jsonl" if fmt == "text" else "alpaca.jsonl")
            self.case("prepare." + cid, g, self.prep_argv(
                [src], fmt, extra=extra, seq_len="1" if cid == "seq_len_one" else "64"), words=words,
                      absent=["out.h5", "val.h5"])

        # Conversations, options, mixing and the model's own template (issue 14).
        sharegpt = (json.dumps({"conversations": [{"from": "human", "value": "Hi"},
                                                  {"from": "gpt", "value": "Hello"}]}) + "\n")
        self.case("prepare.control_sharegpt", g, self.prep_argv(["in.jsonl"], "sharegpt"), exit=0,
                  files={"in.jsonl": sharegpt * 3}, post=[{"exists": "out.h5"}])
        bad("sharegpt_unknown_from", "in.jsonl", sharegpt + json.dumps(
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "x"}]})
            + "\n", "sharegpt", ["in.jsonl:2", "conversations[1].from", "bot"])
        user_only = json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n"
        bad("last_assistant_without_assistant", "in.jsonl", jl(alpaca_lines[:0]) + user_only,
            "chat", ["in.jsonl:1", "messages", "last-assistant"],
            extra=["--train-on", "last-assistant"])
        for cid, spec in (("weight_negative", "in.jsonl:-1"), ("weight_not_a_number", "in.jsonl:abc"),
                          ("weight_zero", "in.jsonl:0")):
            self.case("prepare." + cid, g, self.prep_argv([spec], "alpaca"),
                      words=[spec, "not a positive number"], files={"in.jsonl": alpaca},
                      absent=["out.h5"])
        self.case("prepare.weight_on_some_inputs", g, self.prep_argv(
            ["in.jsonl:0.5", "{base}/inputs/alpaca.jsonl"], "alpaca"),
                  words=["--input", "every input or to none"], files={"in.jsonl": alpaca},
                  absent=["out.h5"])
        self.case("prepare.control_mix", g, self.prep_argv(
            ["in.jsonl:0.3", "{base}/inputs/alpaca.jsonl:0.7"], "alpaca",
            extra=["--report", "report.json"]), exit=0, files={"in.jsonl": alpaca},
                  post=[{"exists": "out.h5"}, {"exists": "report.json"}])
        d = self.case("prepare.template_unsupported_construct", g, self.prep_argv(
            ["{base}/inputs/chat.jsonl"], "chat", tok="tok"),
                      words=["chat_template.jinja:2:", "include", "not supported"], absent=["out.h5"])
        self.write(self.tok_copy(d), "chat_template.jinja",
                   "{{ bos_token }}\n{% include 'turn.jinja' %}")
        d = self.case("prepare.template_raises", g, self.prep_argv(
            ["{base}/inputs/chat.jsonl"], "chat", tok="tok"),
                      words=["chat.jsonl:1", "roles must alternate"], absent=["out.h5"])
        self.write(self.tok_copy(d), "chat_template.jinja",
                   "{{ raise_exception('Conversation roles must alternate user/assistant') }}")
        bad("reasoning_field_for_chat", "in.jsonl", user_only, "chat",
            ["--fields", "reasoning=", "alpaca"], extra=["--fields", "reasoning=Complex_CoT"])
        bad("fields_unknown_key", "in.jsonl", alpaca, "alpaca", ["--fields", "answer"],
            extra=["--fields", "answer=Response"])
        bad("thinking_bad", "in.jsonl", alpaca, "alpaca", ["--thinking", "maybe"],
            extra=["--thinking", "maybe"])
        bad("train_on_bad", "in.jsonl", alpaca, "alpaca", ["--train-on", "everything"],
            extra=["--train-on", "everything"])

    def tok_copy(self, d, name="tok"):
        t = os.path.join(d, name)
        os.makedirs(t)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(self.model, f), os.path.join(t, f))
        return t

    def group_tokenizer(self):
        g = "tokenizer"
        src = ["{base}/inputs/text.jsonl"]
        with open(os.path.join(self.model, "tokenizer.json")) as f:
            tj_text = f.read()
        with open(os.path.join(self.model, "tokenizer_config.json")) as f:
            tc = json.load(f)

        def case(cid, words, fmt="text", exit=2, edit=None, **kw):
            d = self.case("tokenizer." + cid, g, self.prep_argv(src if fmt == "text" else [
                "{base}/inputs/chat.jsonl"], fmt, tok="tok", extra=kw.pop("extra", ())),
                          exit=exit, words=words, absent=["out.h5"] if exit else [], **kw)
            t = self.tok_copy(d)
            if edit:
                edit(t)
            return d

        def set_tj(obj):
            return lambda t: self.write(t, "tokenizer.json", json.dumps(obj))

        def set_tc(obj):
            return lambda t: self.write(t, "tokenizer_config.json", json.dumps(obj))

        tj = json.loads(tj_text)
        case("control", [], exit=0, post=[{"exists": "out.h5"}])
        if self.have_qwen3:
            self.case("tokenizer.control_qwen3", g, self.prep_argv(
                ["{base}/inputs/chat.jsonl"], "chat",
                tok=self.qwen3), exit=0,
                post=[{"exists": "out.h5"}])
        eos_obj = dict(tc)
        eos_obj["eos_token"] = {"__type": "AddedToken", "content": tc["eos_token"],
                                "lstrip": False, "rstrip": False, "normalized": False,
                                "single_word": False, "special": True}
        case("eos_token_as_added_token_object", [], exit=0, edit=set_tc(eos_obj),
             post=[{"exists": "out.h5"}],
             note="transformers writes eos_token as an AddedToken object in older folders")
        case("missing_tokenizer_json", ["tokenizer.json", "tok"],
             edit=lambda t: os.remove(os.path.join(t, "tokenizer.json")))
        case("truncated_tokenizer_json", ["tokenizer.json", BAD_JSON],
             edit=lambda t: self.write(t, "tokenizer.json", tj_text[:len(tj_text) // 2]))
        case("tokenizer_json_not_object", ["tokenizer.json", "object"],
             edit=lambda t: self.write(t, "tokenizer.json", "[1, 2]"))
        x = json.loads(tj_text)
        x["model"]["type"] = "WordPiece"
        case("model_type_wordpiece", ["tokenizer.json", "model.type", "WordPiece"],
             edit=set_tj(x))
        x = json.loads(tj_text)
        x["model"]["vocab"] = list(x["model"]["vocab"])
        case("vocab_not_object", ["tokenizer.json", "model.vocab"], edit=set_tj(x))
        x = json.loads(tj_text)
        x["model"]["merges"] = [["zzqq", "qqzz"]] + list(x["model"]["merges"])
        case("merge_unknown_token", ["tokenizer.json", "merges", "zzqq"], edit=set_tj(x))
        x = json.loads(tj_text)
        x["model"]["byte_fallback"] = True
        case("byte_fallback", ["tokenizer.json", "byte_fallback"], edit=set_tj(x))
        x = json.loads(tj_text)
        k = next(iter(x["model"]["vocab"]))
        x["model"]["vocab"][k] = -4
        case("vocab_negative_id", ["tokenizer.json", "model.vocab", "-4"], edit=set_tj(x))
        x = json.loads(tj_text)
        x["pre_tokenizer"] = {"type": "Whitespace"}
        case("pre_tokenizer_unsupported", ["tokenizer.json", "pre_tokenizer", "Whitespace"],
             edit=set_tj(x))
        case("truncated_tokenizer_config", ["tokenizer_config.json", BAD_JSON],
             edit=lambda t: self.write(t, "tokenizer_config.json", '{"eos_token": "<|im_'))
        y = dict(tc)
        y["eos_token"] = "<|eot|>"
        case("eos_token_not_in_vocab", ["tokenizer_config.json", "eos_token", "<|eot|>",
                                        any_of("vocabulary", "vocab", "not a token")],
             edit=set_tc(y), note="issue 15: reported as 'no eos_token'")
        y = dict(tc)
        del y["eos_token"]
        case("eos_token_missing", ["tokenizer_config.json", "eos_token"], edit=set_tc(y))
        y = dict(tc)
        y["eos_token"] = 5
        case("eos_token_number", ["tokenizer_config.json", "eos_token",
                                  any_of("string", "number", "got 5", "is 5")], edit=set_tc(y))
        y = dict(tc)
        y["pad_token"] = "<|padding|>"
        case("pad_token_not_in_vocab", ["tokenizer_config.json", "pad_token", "<|padding|>"],
             edit=set_tc(y))
        x = json.loads(tj_text)
        x["added_tokens"] = [a for a in x["added_tokens"] if a["content"] != "<|im_start|>"]
        x["model"]["vocab"].pop("<|im_start|>", None)
        case("chat_without_im_start", ["--chat-template", "<|im_start|>"], fmt="chat",
             extra=["--chat-template", "qwen"], edit=set_tj(x))
        self.case("tokenizer.folder_missing", g, self.prep_argv(src, "text", tok="no_such_tok"),
                  words=["--tokenizer", "no_such_tok"], absent=["out.h5"])
        self.case("tokenizer.folder_is_file", g, self.prep_argv(src, "text", tok="run.yaml"),
                  words=["--tokenizer", "run.yaml"], absent=["out.h5"], files={"run.yaml": "x"})
        d = self.case("tokenizer.inspect_broken_tokenizer", g, [
            "{trainer}", "inspect", "--data", "{base}/data/train.h5", "--tokenizer", "tok"],
            words=["tokenizer.json", BAD_JSON])
        self.write(self.tok_copy(d), "tokenizer.json", tj_text[:100])
