// `trainer prepare` on a fuzzed input file: runPrepare reads it as JSONL, a JSON array or
// text lines, parses each record for the chosen format, renders and tokenizes it with a
// small tokenizer (fixtures/qwen_tokenizer or fixtures/llama3_tokenizer) and writes HDF5.
//
// Input: two option bytes, then the file [NUL prompt template [NUL completion template]].
//   byte 0: bits 0-1 format (alpaca, chat, text, template), bit 2 --on-overflow drop,
//           bit 3 the Llama 3 tokenizer, bit 4 a .txt file (else .jsonl), bit 5 a validation
//           split of 0.5, bit 6 --chat-template given (bit 7: llama3, else qwen)
//   byte 1: --seq-len 2 + byte
// Checked on success: the files open (Hdf5Dataset validates them), hold the counted samples,
// none longer than --seq-len, every sample reads back.

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "loom/core/log.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/prepare.hpp"

namespace {

void checkOutput(const loom::PrepareSplitSummary& split, int64_t seq_len) {
  const loom::Hdf5Dataset ds(split.path);
  LOOM_FUZZ_EXPECT(ds.numSamples() == split.samples && ds.numTokens() == split.tokens,
                   "file holds " << ds.numSamples() << " samples / " << ds.numTokens()
                                 << " tokens; summary says " << split.samples << " / "
                                 << split.tokens);
  std::vector<int64_t> all(static_cast<size_t>(ds.numSamples()));
  std::iota(all.begin(), all.end(), 0);
  for (int64_t i : all) {
    LOOM_FUZZ_EXPECT(ds.sampleLength(i) <= seq_len,
                     "sample " << i << " has " << ds.sampleLength(i) << " tokens > " << seq_len);
  }
  (void)ds.readSamples(all);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  loom::setupLogging(loom::LogIdentity{}, loom::LogLevel::kError);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const auto parts = loom::fuzz::splitAtNul(loom::fuzz::asText(data + 2, size - 2), 3);

  loom::PrepareOptions o;
  o.format = static_cast<loom::PrepareFormat>(flags & 3);
  o.on_overflow = flags & 4 ? loom::OverflowPolicy::kDrop : loom::OverflowPolicy::kTruncate;
  o.tokenizer_dir = loom::fuzz::fixture(flags & 8 ? "llama3_tokenizer" : "qwen_tokenizer");
  o.inputs = {loom::fuzz::writeScratch(flags & 16 ? "input.txt" : "input.jsonl", parts[0])};
  o.output = loom::fuzz::scratchDir() / "train.h5";
  if (flags & 32) {
    o.val_fraction = 0.5;
    o.val_output = loom::fuzz::scratchDir() / "val.h5";
  }
  if (flags & 64) {
    o.chat_template = flags & 128 ? "llama3" : "qwen";
  }
  o.seq_len = 2 + data[1];
  if (o.format == loom::PrepareFormat::kTemplate) {
    o.prompt_template = parts.size() > 1 ? std::string(parts[1]) : "Question: {Question}\n";
    o.completion_template = parts.size() > 2 ? std::string(parts[2]) : "{Response}";
  }
  o.threads = 1;
  o.progress = false;
  o.chunk_bytes = 64;  // many small chunks: the reader/worker/writer hand-over is exercised
  o.chunk_records = 3;

  loom::fuzz::expectLoomErrorsOnly([&] {
    const loom::PrepareSummary s = loom::runPrepare(o);
    checkOutput(s.train, o.seq_len);
    if (s.val) checkOutput(*s.val, o.seq_len);
  });
  loom::fuzz::expectNoOpenHdf5Objects();
  return 0;
}
