"""bitsandbytes' NF4 on the CPU as the reference for Loom's (tests/model/nf4_reference_test.cpp).

    nf4_reference.py make OUT.safetensors [--seed N]
        Random weights of several shapes and dtypes (real Qwen3-1.7B shapes among them, sizes
        not divisible by 64 or 256, an odd count, an all-zero block), each quantized with
        bitsandbytes.functional.quantize_4bit(w, blocksize=64, quant_type="nf4",
        compress_statistics=True), and dequantized by bitsandbytes to fp32 and bf16. Writes, per
        case i: w.i (the weight), packed.i, absmax.i (uint8 codes), nested_absmax.i, offset.i,
        deq_f32.i, deq_bf16.i; and dynamic_map (create_dynamic_map()). Prints the case list.
"""

import argparse
import copy
import json
import sys

import torch


def cases(seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape, dtype, std in [((64, 128), torch.float32, 0.02),
                              ((96, 64), torch.float32, 1.0),
                              ((33, 7), torch.float32, 0.05),       # 231 values: odd, partial block
                              ((1000, 65), torch.float32, 0.02),    # 1016 blocks: partial nested block
                              ((3, 5), torch.float32, 0.3),
                              ((2048, 2048), torch.bfloat16, 0.02),  # Qwen3-1.7B q_proj / o_proj
                              ((6144, 2048), torch.bfloat16, 0.02),  # gate_proj / up_proj
                              ((2048, 6144), torch.float32, 0.02),   # down_proj
                              ((1024, 2048), torch.float16, 0.02),   # k_proj / v_proj
                              ((300, 64), torch.float32, 0.1)]:
        w = (torch.randn(shape, generator=g) * std)
        # heavy tails: some blocks with an outlier, as real weights have
        flat = w.view(-1)
        idx = torch.randint(0, flat.numel(), (max(1, flat.numel() // 500),), generator=g)
        flat[idx] *= 8
        if shape == (300, 64):
            w[5, :] = 0  # one block that is all zeros
        out.append(w.to(dtype))
    return out


def dequantize(packed, state, dtype):
    import bitsandbytes.functional as F
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    st = copy.copy(state)
    st.dtype = dtype
    if state.shape[-1] % 64 == 0:
        return F.dequantize_4bit(packed, st)  # the CPU library kernel
    # The CPU library's AVX-512 path indexes absmax per row, right only when a row is a whole
    # number of blocks; the default backend computes the flat-block layout it quantized with.
    absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    code = F.get_4bit_type("nf4", device="cpu")
    return _dequantize_4bit_compute(packed.view(-1), absmax.float(), code, 64, state.shape, dtype)


def cmd_make(args):
    import bitsandbytes.functional as F
    # The absmax mean (the double-quant offset) is a torch reduction whose last bit follows the
    # thread count; Loom always uses torch's one-thread order.
    torch.set_num_threads(1)
    from safetensors.torch import save_file
    tensors = {"dynamic_map": F.create_dynamic_map()}
    listing = []
    for i, w in enumerate(cases(args.seed)):
        packed, st = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
        tensors[f"w.{i}"] = w
        tensors[f"packed.{i}"] = packed.view(-1).contiguous()
        tensors[f"absmax.{i}"] = st.absmax.contiguous()
        tensors[f"nested_absmax.{i}"] = st.state2.absmax.contiguous()
        tensors[f"offset.{i}"] = st.offset.reshape(1).float()
        tensors[f"deq_f32.{i}"] = dequantize(packed, st, torch.float32).contiguous()
        tensors[f"deq_bf16.{i}"] = dequantize(packed, st, torch.bfloat16).contiguous()
        listing.append({"case": i, "shape": list(w.shape), "dtype": str(w.dtype)})
    save_file(tensors, args.out)
    print(json.dumps(listing))


def main(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    cmd_make(a)


if __name__ == "__main__":
    main(sys.argv[1:])
