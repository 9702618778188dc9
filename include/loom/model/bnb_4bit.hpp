#pragma once
// bitsandbytes 4-bit checkpoints (what transformers' save_pretrained writes for a model loaded
// with BitsAndBytesConfig(load_in_4bit=True)): each quantized linear weight `<module>.weight`
// is stored as
//   <module>.weight                                 uint8 [(numel + 1) / 2, 1] packed NF4
//   <module>.weight.absmax                          uint8 [blocks] (double quant) | F32 [blocks]
//   <module>.weight.quant_map                       F32 [16] the NF4 levels
//   <module>.weight.nested_absmax                   F32 [ceil(blocks / nested_blocksize)]
//   <module>.weight.nested_quant_map                F32 [256] the 8-bit dynamic map
//   <module>.weight.quant_state.bitsandbytes__nf4   uint8 JSON {quant_type, blocksize, dtype,
//                                                   shape, nested_blocksize, nested_dtype,
//                                                   nested_offset}
// (the nested_* entries only with double quantization).

#include <string>
#include <vector>

#include "loom/model/nf4.hpp"
#include "loom/model/safetensors.hpp"

namespace loom {

/// Whether `checkpoint` stores tensor `name` in bitsandbytes 4-bit form (any quant_state).
bool isBnb4bitTensor(const SafetensorsCheckpoint& checkpoint, const std::string& name);

/// Every checkpoint key that belongs to the 4-bit tensor `name` (name itself included).
std::vector<std::string> bnb4bitKeys(const SafetensorsCheckpoint& checkpoint,
                                     const std::string& name);

/// Reads and validates the 4-bit tensor `name` (CPU tensors). `expected_shape` is what
/// config.json implies. InputError naming the file and the tensor for a quant type other than
/// nf4, a blocksize bitsandbytes does not use, malformed JSON, a missing piece, or a size, dtype
/// or shape that does not fit.
Nf4Weight readBnb4bit(const SafetensorsCheckpoint& checkpoint, const std::string& name,
                      const std::vector<int64_t>& expected_shape);

}  // namespace loom
