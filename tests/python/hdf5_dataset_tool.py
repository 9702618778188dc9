"""Writes and dumps Loom token files with h5py, independently of the C++ code.

    hdf5_dataset_tool.py write SPEC.json OUT.h5 [--corrupt MODE]
    hdf5_dataset_tool.py dump IN.h5 OUT.json

SPEC.json: {"vocab_size": V, "samples": [{"tokens": [...], "mask": [...]}, ...]} plus
optional "tokenizer_hash", "eos_id", "pad_id", "source_files", "template", "created".
The layout follows include/loom/data/hdf5_dataset.hpp; --corrupt breaks one rule of it
so the C++ reader's checks can be exercised on a file it did not write.
"""

import argparse
import json

import h5py
import numpy as np

CORRUPTIONS = [
    "none",
    "format-name",
    "format-version",
    "no-format",
    "nonmonotonic-offsets",
    "offsets-length",
    "mask-length",
    "offsets-end",
    "bad-token",
    "missing-tokens",
    "loss-count",
    "mask0",
    "count-attribute",
    "float-tokens",
    "offsets-overflow",
    "unstored-extent",
]


def write(spec_path, out_path, corrupt):
    with open(spec_path) as f:
        spec = json.load(f)
    samples = spec["samples"]
    lengths = [len(s["tokens"]) for s in samples]
    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    tokens = np.array([t for s in samples for t in s["tokens"]], dtype=np.int32)
    mask = np.array([m for s in samples for m in s["mask"]], dtype=np.uint8)
    # The format's convention: the first token of a sample is never a target.
    loss_tokens = np.array([int(sum(s["mask"][1:])) for s in samples], dtype=np.int32)
    for i, length in enumerate(lengths):
        if length > 0:
            # mask0: a tool that marks the first token; readers must ignore it.
            mask[offsets[i]] = 1 if corrupt == "mask0" else 0

    if corrupt == "nonmonotonic-offsets":
        offsets[2] = offsets[3] + 1  # sample 1 ends after sample 2 ends: sample 2 is negative
    if corrupt == "offsets-length":
        offsets = offsets[:-1]
    if corrupt == "mask-length":
        mask = mask[:-1]
    if corrupt == "offsets-end":
        tokens = np.concatenate([tokens, np.zeros(3, dtype=np.int32)])
        mask = np.concatenate([mask, np.zeros(3, dtype=np.uint8)])
    if corrupt == "bad-token":
        tokens[offsets[2] + 1] = spec["vocab_size"]  # sample 2, position 1
    if corrupt == "loss-count":
        loss_tokens[1] += 1
    if corrupt == "offsets-overflow":
        offsets[3] = np.iinfo(np.int64).min + 1  # sample 2 ends ~2^63 before it starts

    with h5py.File(out_path, "w") as f:
        chunk = (min(64, max(1, len(tokens))),)
        if corrupt == "float-tokens":
            f.create_dataset("tokens", data=tokens.astype(np.float32), chunks=chunk,
                             maxshape=(None,))
        elif corrupt != "missing-tokens":
            f.create_dataset("tokens", data=tokens, chunks=chunk, maxshape=(None,))
        f.create_dataset("loss_mask", data=mask, chunks=chunk, maxshape=(None,))
        if corrupt == "unstored-extent":
            # 2^40 samples, no chunk written: nothing in the (small) file backs the extent.
            f.create_dataset("offsets", shape=(2**40 + 1,), dtype=np.int64, chunks=(1024,))
            f.create_dataset("loss_tokens", shape=(2**40,), dtype=np.int32, chunks=(1024,))
        else:
            f.create_dataset("offsets", data=offsets)
            f.create_dataset("loss_tokens", data=loss_tokens)
        if corrupt != "no-format":
            f.attrs["format"] = "not-loom" if corrupt == "format-name" else "loom-tokens"
        f.attrs["format_version"] = np.int64(2 if corrupt == "format-version" else 1)
        f.attrs["vocab_size"] = np.int64(spec["vocab_size"])
        f.attrs["tokenizer_hash"] = spec.get("tokenizer_hash", "")
        f.attrs["eos_id"] = np.int64(spec.get("eos_id", -1))
        f.attrs["pad_id"] = np.int64(spec.get("pad_id", -1))
        f.attrs["source_files"] = spec.get("source_files", [])
        f.attrs["template"] = spec.get("template", "")
        f.attrs["created"] = spec.get("created", "2024-01-01T00:00:00Z")
        f.attrs["num_samples"] = np.int64(len(samples) + (1 if corrupt == "count-attribute" else 0))
        f.attrs["num_tokens"] = np.int64(int(offsets[-1]))
        f.attrs["num_loss_tokens"] = np.int64(int(loss_tokens.sum()))


def to_python(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [to_python(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def dump(in_path, out_path):
    with h5py.File(in_path, "r") as f:
        out = {
            "attrs": {k: to_python(v) for k, v in f.attrs.items()},
            "dtypes": {k: str(f[k].dtype) for k in f.keys()},
            "chunks": {k: f[k].chunks for k in f.keys()},
        }
        for name in ("tokens", "loss_mask", "offsets", "loss_tokens"):
            out[name] = f[name][...].tolist()
    with open(out_path, "w") as f:
        json.dump(out, f)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("spec")
    w.add_argument("out")
    w.add_argument("--corrupt", choices=CORRUPTIONS, default="none")
    d = sub.add_parser("dump")
    d.add_argument("file")
    d.add_argument("out")
    args = parser.parse_args()
    if args.command == "write":
        write(args.spec, args.out, args.corrupt)
    else:
        dump(args.file, args.out)


if __name__ == "__main__":
    main()
