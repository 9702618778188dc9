#pragma once
// What the fuzz targets share: a scratch folder for the files some parsers must read from
// disk, the fixtures (small tokenizers), and the rule for exceptions.
//
// The rule: bad input must end in a loom::InputError (or, for an internal check, loom::Error)
// thrown to the caller. Anything else is a finding: a sanitizer report, a crash, a hang, an
// allocation past libFuzzer's limit, another exception type escaping (it reaches
// std::terminate and aborts), or a broken invariant checked with LOOM_FUZZ_EXPECT.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "loom/core/error.hpp"

namespace loom::fuzz {

/// A folder of this process's own: $LOOM_FUZZ_TMPDIR, else /dev/shm (prepare fsyncs its
/// output, which is free on a tmpfs), else the system's temporary folder; plus "loom-fuzz-<pid>".
/// Created on first use, removed at exit.
const std::filesystem::path& scratchDir();

/// Writes `bytes` to scratchDir()/`name` (replacing it) and returns the path.
std::filesystem::path writeScratch(const std::string& name, std::string_view bytes);

/// A folder under tests/fuzz/fixtures (compiled in), e.g. fixture("qwen_tokenizer").
std::filesystem::path fixture(const std::string& name);

/// The fuzzer's input as text.
inline std::string_view asText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// `text` cut at each NUL byte (a NUL never occurs in the JSON or YAML parts of an input).
/// At most `max_parts` parts: the last one keeps any further NULs.
std::vector<std::string_view> splitAtNul(std::string_view text, size_t max_parts);

/// True when LOOM_FUZZ_PRINT_ERRORS is set: expected errors are printed (to see which checks
/// a corpus reaches, e.g. `LOOM_FUZZ_PRINT_ERRORS=1 build-fuzz/config_fuzz
/// build-fuzz/corpus/config/*`).
bool printErrors();

/// Runs `body`; a loom::Error (InputError included) is the expected end of bad input.
template <typename Body>
void expectLoomErrorsOnly(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    if (printErrors()) std::fprintf(stderr, "loom error: %s\n", e.what());
  }
}

/// Fails (a finding) when any HDF5 object (file, dataset, attribute, ...) is still open:
/// every handle Loom opens must be closed by its owner, on success and on error.
void expectNoOpenHdf5Objects();

[[noreturn]] void failExpectation(const char* file, int line, const char* condition,
                                  const std::string& message);

}  // namespace loom::fuzz

/// An invariant the code under test promises; a violation aborts (a libFuzzer crash).
#define LOOM_FUZZ_EXPECT(condition, message)                                                  \
  do {                                                                                        \
    if (!(condition)) {                                                                       \
      std::ostringstream loom_fuzz_stream_;                                                   \
      loom_fuzz_stream_ << message;                                                           \
      ::loom::fuzz::failExpectation(__FILE__, __LINE__, #condition, loom_fuzz_stream_.str()); \
    }                                                                                         \
  } while (false)
