// Opening a token file (hdf5_dataset.hpp): the input's bytes are written to a file that
// Hdf5Dataset opens, which validates the format attributes and the index (offsets,
// loss_tokens) before anything is read. libhdf5 itself is not instrumented: a crash inside
// it still shows, its coverage does not guide the fuzzer. Users' opens probe the file in a
// forked child first (a libhdf5 crash becomes an InputError there); the target switches that
// off (LOOM_TEST_HDF5_IN_PROCESS) so that Loom's own checks run in this instrumented process
// and tools/fuzz.sh tells libhdf5's faults from Loom's by their stack.
// Checked on success: the index is what the header promises (offsets start at 0, never
// decrease, end at numTokens(); loss counts fit their samples), and every sample reads back
// (validated against vocab_size and loss_tokens) when the file is small.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <vector>

#include "fuzz_support.hpp"
#include "loom/data/hdf5_dataset.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("LOOM_TEST_HDF5_IN_PROCESS", "1", /*overwrite=*/1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = loom::fuzz::writeScratch("tokens.h5", loom::fuzz::asText(data, size));
  loom::fuzz::expectLoomErrorsOnly([&] {
    const loom::Hdf5Dataset ds(path);
    const auto& offsets = ds.offsets();
    const auto& loss = ds.lossTokens();
    const int64_t n = ds.numSamples();
    LOOM_FUZZ_EXPECT(
        static_cast<int64_t>(offsets.size()) == n + 1 && static_cast<int64_t>(loss.size()) == n,
        offsets.size() << " offsets and " << loss.size() << " loss counts for " << n << " samples");
    LOOM_FUZZ_EXPECT(offsets[0] == 0 && offsets[n] == ds.numTokens(), "offsets do not span tokens");
    for (int64_t i = 0; i < n; ++i) {
      const int64_t length = ds.sampleLength(i);
      LOOM_FUZZ_EXPECT(length >= 0 && loss[i] >= 0 && loss[i] <= std::max<int64_t>(length - 1, 0),
                       "sample " << i << ": length " << length << ", loss tokens " << loss[i]);
    }
    LOOM_FUZZ_EXPECT(ds.info().vocab_size > 0, "vocab_size " << ds.info().vocab_size);
    // Reading is bounded by the file's size only through HDF5; keep each input cheap.
    if (ds.numTokens() > (int64_t{1} << 20)) return;
    std::vector<int64_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    const loom::SampleBatch batch = ds.readSamples(all);
    LOOM_FUZZ_EXPECT(static_cast<int64_t>(batch.tokens.size()) == ds.numTokens(),
                     "read " << batch.tokens.size() << " tokens of " << ds.numTokens());
    const auto within = ds.lossTokensWithin(8);
    for (int64_t i = 0; i < n; ++i) {
      LOOM_FUZZ_EXPECT(within[i] >= 0 && within[i] <= std::min<int64_t>(loss[i], 7),
                       "sample " << i << ": " << within[i] << " loss tokens within 8");
    }
  });
  loom::fuzz::expectNoOpenHdf5Objects();
  return 0;
}
