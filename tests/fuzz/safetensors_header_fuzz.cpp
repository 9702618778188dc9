// safetensors header parsing: the input is a whole .safetensors file (u64 length, JSON
// header, data section).
// Checked on success: every entry has non-negative dimensions whose product times the
// element size is its byte range, and the ranges tile the data section in offset order.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_support.hpp"
#include "loom/model/safetensors_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loom::fuzz::expectLoomErrorsOnly([&] {
    const auto header =
        loom::parseSafetensorsHeader(loom::fuzz::asText(data, size), "fuzz.safetensors");
    LOOM_FUZZ_EXPECT(header.dataOffset() + header.data_size == size,
                     "data section [" << header.dataOffset() << ", +" << header.data_size
                                      << ") is not the rest of a " << size << "-byte file");
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, e] : header.entries) {
      // The product is formed the way a caller would (tensors are shaped by int64 sizes).
      uint64_t numel = 1;
      for (int64_t d : e.shape) {
        LOOM_FUZZ_EXPECT(d >= 0, "tensor '" << name << "' has dimension " << d);
        numel *= static_cast<uint64_t>(d);
      }
      LOOM_FUZZ_EXPECT(e.element_size > 0 && e.end - e.begin == numel * e.element_size,
                       "tensor '" << name << "': " << e.end - e.begin << " bytes for " << numel
                                  << " elements of " << e.element_size);
      ranges.emplace_back(e.begin, e.end);
    }
    std::sort(ranges.begin(), ranges.end());
    uint64_t cursor = 0;
    for (const auto& [begin, end] : ranges) {
      LOOM_FUZZ_EXPECT(begin == cursor && end >= begin, "ranges do not tile the data section");
      cursor = end;
    }
    LOOM_FUZZ_EXPECT(cursor == header.data_size,
                     "ranges end at " << cursor << " of " << header.data_size);
  });
  return 0;
}
