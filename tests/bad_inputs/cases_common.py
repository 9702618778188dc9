"""Constants and small helpers shared by make_cases.py and its case-group modules
(cases_inputs.py, cases_files.py, cases_runs.py): paths, the test environment, the run.yaml
template, word lists for messages, text edits and raw safetensors read/write."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHARED_TOKENIZERS = os.environ.get(
    "LOOM_SHARED_TOKENIZERS", os.path.join(os.path.dirname(REPO), "shared", "tokenizers"))

TEST_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
}


RUN_YAML = """\
run:
  name: bad-inputs
  output_dir: {out}
  seed: 1234
model:
  path: {model}
  dtype: fp32
finetune:
  method: {method}
{adapter}  lora: {{r: {r}, alpha: 8, dropout: 0.0, targets: all-linear}}
data:
  train: {train}
{eval}  seq_len: 64
  packing: true
train:
  global_batch_tokens: 256
  max_steps: {max_steps}
  lr: 1.0e-3
  log_every: 1
checkpoint:
  every: {every}
  keep: 2
  resume: {resume}
cluster:
  backend: auto
  balance: static
  collective_timeout_s: 120
  ranks:
    - device: cpu
      micro_batch: 2
"""


def any_of(*words):
    """A word entry satisfied by any one of `words`."""
    return list(words)


# What a message about unparsable JSON/YAML says. ("JSON"/"YAML" alone would be matched by the
# file name itself, e.g. tokenizer.json or run.yaml: words are matched case-insensitively.)
BAD_JSON = ["malformed JSON", "not valid JSON", "invalid JSON", "JSON syntax", "parse error"]
BAD_YAML = ["not valid YAML", "invalid YAML", "YAML syntax", "YAML parse", "YAML error"]


def line_of(text, needle, nth=1):
    """1-based line number of the nth line of `text` containing `needle`."""
    seen = 0
    for i, line in enumerate(text.split("\n"), 1):
        if needle in line:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError(f"{needle!r} not in text")


def mutate(text, old, new, count=1):
    assert old in text, old
    return text.replace(old, new, count)


# ---------------------------------------------------------------------------------------
# safetensors, raw


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return header, raw[8 + n:]


def st_write(path, header, data, header_bytes=None, length=None):
    hb = header_bytes if header_bytes is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb) if length is None else length))
        f.write(hb)
        f.write(data)


def st_save_numpy(path, tensors, metadata=None):
    from safetensors.numpy import save_file
    save_file(tensors, path, metadata=metadata)


def st_load_numpy(path):
    from safetensors.numpy import load_file
    return load_file(path)
