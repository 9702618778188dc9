#include "support/tiny_dataset.hpp"

#include <cstdint>
#include <random>
#include <vector>

#include "loom/data/hdf5_dataset.hpp"

namespace loom::testing {

void writeTinyDataset(const std::filesystem::path& path, int count, unsigned seed,
                      const std::string& tokenizer_hash) {
  Hdf5DatasetInfo info;
  info.vocab_size = 300;
  info.eos_id = 1;
  info.pad_id = 0;
  info.tokenizer_hash = tokenizer_hash;
  Hdf5DatasetWriter writer(path, info);
  std::mt19937 rng(seed);
  for (int i = 0; i < count; ++i) {
    const int n = 4 + static_cast<int>(rng() % 57);
    std::vector<int32_t> tokens(n);
    std::vector<uint8_t> mask(n, 0);
    for (int t = 0; t < n; ++t) {
      tokens[t] = 2 + static_cast<int32_t>(rng() % 298);
      mask[t] = t >= n / 3 && t > 0 ? 1 : 0;
    }
    writer.append(tokens, mask);
  }
  writer.finish();
}

}  // namespace loom::testing
