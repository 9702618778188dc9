// Loading a tokenizer.json (and tokenizer_config.json) and encoding text with it.
//
// Input: tokenizer.json [NUL text [NUL tokenizer_config.json]]. The text is encoded twice
// (the second time through the per-thread word cache) and decoded.
// Checked: ids lie in [0, vocabSize()); each token's start offset lies in the text and the
// offsets never decrease (tokenizeChat's loss mask relies on it); a second encode gives the
// same ids and offsets.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "loom/data/tokenizer.hpp"

namespace {

void checkEncoding(const loom::Tokenizer& tok, std::string_view text) {
  std::vector<int32_t> ids;
  std::vector<size_t> starts;
  tok.encode(text, ids, &starts);
  LOOM_FUZZ_EXPECT(ids.size() == starts.size(), ids.size()
                                                    << " ids but " << starts.size() << " offsets");
  for (size_t i = 0; i < ids.size(); ++i) {
    LOOM_FUZZ_EXPECT(ids[i] >= 0 && ids[i] < tok.vocabSize(),
                     "id " << ids[i] << " outside [0, " << tok.vocabSize() << ")");
    LOOM_FUZZ_EXPECT(starts[i] <= text.size(),
                     "token " << i << " starts at " << starts[i] << " of " << text.size());
    LOOM_FUZZ_EXPECT(i == 0 || starts[i - 1] <= starts[i], "offsets decrease at token "
                                                               << i << ": " << starts[i - 1]
                                                               << " then " << starts[i]);
  }
  std::vector<int32_t> again_ids;
  std::vector<size_t> again_starts;
  tok.encode(text, again_ids, &again_starts);
  LOOM_FUZZ_EXPECT(again_ids == ids && again_starts == starts,
                   "a second encode (word cache) differs from the first");
  LOOM_FUZZ_EXPECT(tok.encode(text) == ids, "encode without offsets differs");
  (void)tok.decode(ids);
  (void)tok.decode(ids, /*skip_special=*/true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = loom::fuzz::splitAtNul(loom::fuzz::asText(data, size), 3);
  const auto json = loom::fuzz::writeScratch("tokenizer.json", parts[0]);
  if (parts.size() > 2) {
    loom::fuzz::writeScratch("tokenizer_config.json", parts[2]);
  } else {
    std::error_code ec;
    std::filesystem::remove(loom::fuzz::scratchDir() / "tokenizer_config.json", ec);
  }
  loom::fuzz::expectLoomErrorsOnly([&] {
    const loom::Tokenizer tok = parts.size() > 2 ? loom::Tokenizer::fromDir(json.parent_path())
                                                 : loom::Tokenizer::fromFile(json);
    for (auto id : {tok.eosId(), tok.padId(), tok.bosId()}) {
      LOOM_FUZZ_EXPECT(!id || (*id >= 0 && *id < tok.vocabSize()),
                       "special id " << *id << " outside [0, " << tok.vocabSize() << ")");
    }
    if (parts.size() > 1) checkEncoding(tok, parts[1]);  // InputError for invalid UTF-8
  });
  return 0;
}
