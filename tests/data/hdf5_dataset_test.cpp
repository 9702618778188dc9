// Token files: the writer and reader agree with each other and with h5py, and every broken
// file is refused with an InputError that names the file and the place.

#include "loom/data/hdf5_dataset.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

struct TestSample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
};

constexpr int64_t kVocab = 500;

/// Deterministic samples of varied lengths (one empty), masks with runs of targets.
std::vector<TestSample> makeSamples(int count, uint32_t seed = 7) {
  std::vector<TestSample> samples;
  uint32_t state = seed;
  auto rnd = [&state]() {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  };
  for (int i = 0; i < count; ++i) {
    TestSample s;
    const int length = i == 3 ? 0 : 1 + static_cast<int>(rnd() % 40);
    for (int t = 0; t < length; ++t) {
      s.tokens.push_back(static_cast<int32_t>(rnd() % kVocab));
      s.mask.push_back(t >= length / 3 ? 1 : 0);
    }
    if (length > 0) s.mask[0] = 0;  // the format's convention, so the data reads back as is
    samples.push_back(std::move(s));
  }
  return samples;
}

int64_t targetsOf(const TestSample& s) {
  int64_t n = 0;
  for (size_t t = 1; t < s.mask.size(); ++t) n += s.mask[t];
  return n;
}

Hdf5DatasetInfo testInfo() {
  Hdf5DatasetInfo info;
  info.vocab_size = kVocab;
  info.tokenizer_hash = "sha256:abc";
  info.eos_id = 2;
  info.pad_id = 0;
  info.source_files = {"a.jsonl", "b.jsonl"};
  info.template_name = "alpaca";
  return info;
}

fs::path writeWithLoom(const fs::path& path, const std::vector<TestSample>& samples,
                       Hdf5DatasetWriter::Options options = {}) {
  Hdf5DatasetWriter writer(path, testInfo(), options);
  for (const auto& s : samples) writer.append(s.tokens, s.mask);
  writer.finish();
  return path;
}

/// Writes `samples` with h5py (tests/python/hdf5_dataset_tool.py), optionally corrupted.
fs::path writeWithH5py(const TempDir& dir, const std::string& name,
                       const std::vector<TestSample>& samples, const std::string& corrupt = "none",
                       const std::vector<std::string>& source_files = {"a.jsonl"}) {
  nlohmann::json spec;
  spec["vocab_size"] = kVocab;
  spec["tokenizer_hash"] = "sha256:abc";
  spec["eos_id"] = 2;
  spec["pad_id"] = 0;
  spec["source_files"] = source_files;
  spec["template"] = "chat";
  spec["samples"] = nlohmann::json::array();
  for (const auto& s : samples) {
    std::vector<int> mask(s.mask.begin(), s.mask.end());
    spec["samples"].push_back({{"tokens", s.tokens}, {"mask", mask}});
  }
  const auto spec_path = dir.write(name + ".spec.json", spec.dump());
  const auto out = dir.path() / (name + ".h5");
  auto result = testing::runPythonScript(
      "hdf5_dataset_tool.py", {"write", spec_path.string(), out.string(), "--corrupt", corrupt});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return out;
}

/// Runs `f`, expecting an InputError whose message contains every one of `parts`.
template <typename F>
void expectInputError(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    for (const auto& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "message lacks '" << part << "': " << message;
    }
  }
}

void expectSamplesEqual(const Hdf5Dataset& dataset, const std::vector<TestSample>& samples) {
  ASSERT_EQ(dataset.numSamples(), static_cast<int64_t>(samples.size()));
  int64_t total = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const Sample got = dataset.readSample(static_cast<int64_t>(i));
    EXPECT_EQ(got.index, static_cast<int64_t>(i));
    EXPECT_EQ(got.tokens, samples[i].tokens) << "sample " << i;
    EXPECT_EQ(got.loss_mask, samples[i].mask) << "sample " << i;
    EXPECT_EQ(dataset.lossTokens()[i], targetsOf(samples[i])) << "sample " << i;
    EXPECT_EQ(dataset.sampleLength(static_cast<int64_t>(i)),
              static_cast<int64_t>(samples[i].tokens.size()));
    total += static_cast<int64_t>(samples[i].tokens.size());
  }
  EXPECT_EQ(dataset.numTokens(), total);
}

TEST(Hdf5Dataset, WriteReadRoundTrip) {
  TempDir dir;
  const auto samples = makeSamples(50);
  Hdf5DatasetWriter::Options small_chunks;
  small_chunks.chunk_elements = 7;  // samples straddle chunk boundaries and buffer flushes
  const auto path = writeWithLoom(dir.path() / "train.h5", samples, small_chunks);

  Hdf5Dataset dataset(path, kVocab);
  expectSamplesEqual(dataset, samples);
  const auto& info = dataset.info();
  EXPECT_EQ(info.format_version, kTokensFormatVersion);
  EXPECT_EQ(info.vocab_size, kVocab);
  EXPECT_EQ(info.tokenizer_hash, "sha256:abc");
  EXPECT_EQ(info.eos_id, 2);
  EXPECT_EQ(info.pad_id, 0);
  EXPECT_EQ(info.source_files, (std::vector<std::string>{"a.jsonl", "b.jsonl"}));
  EXPECT_EQ(info.template_name, "alpaca");
  EXPECT_EQ(info.created.size(), 20u) << info.created;  // 2024-01-01T00:00:00Z
  EXPECT_EQ(info.num_samples, 50);
  int64_t loss = 0;
  for (const auto& s : samples) loss += targetsOf(s);
  EXPECT_EQ(info.num_loss_tokens, loss);
  EXPECT_EQ(dataset.offsets().front(), 0);
  EXPECT_EQ(dataset.offsets().back(), dataset.numTokens());
}

// The data report travels in the token file as JSON: tens of KB, past the 64 KB an attribute
// stored in the object header may hold, so the test writes 200 KB (UTF-8, not only ASCII).
TEST(Hdf5Dataset, StringAttributesRoundTrip) {
  TempDir dir;
  const auto samples = makeSamples(5);
  std::string report = "{\"sources\": [";
  for (int i = 0; report.size() < 200 * 1024; ++i) {
    report += (i ? ", " : "") + std::string("{\"name\": \"dätä-") + std::to_string(i) +
              ".jsonl\", \"samples\": " + std::to_string(i * 7) + "}";
  }
  report += "]}";
  const auto path = dir.path() / "train.h5";
  {
    Hdf5DatasetWriter writer(path, testInfo());
    for (const auto& s : samples) writer.append(s.tokens, s.mask);
    writer.setStringAttribute("data_report", "replaced below");
    writer.setStringAttribute("data_report", report);
    writer.setStringAttribute("short", "x");
    writer.setStringAttribute("empty", "");
    writer.finish();
  }
  Hdf5Dataset dataset(path, kVocab);
  EXPECT_EQ(dataset.stringAttribute("data_report"), report);
  EXPECT_EQ(dataset.stringAttribute("short"), "x");
  EXPECT_EQ(dataset.stringAttribute("empty"), "");
  EXPECT_EQ(dataset.stringAttribute("absent"), std::nullopt);
  EXPECT_EQ(dataset.stringAttribute("vocab_size"), std::nullopt);  // an integer
  EXPECT_EQ(dataset.stringAttribute("template"), "alpaca");
  expectSamplesEqual(dataset, samples);

  // h5py (and so any other reader) sees the same value.
  const auto dump = dir.path() / "dump.json";
  auto result =
      testing::runPythonScript("hdf5_dataset_tool.py", {"dump", path.string(), dump.string()});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(nlohmann::json::parse(testing::readFile(dump))["attrs"]["data_report"], report);
}

TEST(Hdf5Dataset, StringAttributeNamesOfTheFormatRefused) {
  TempDir dir;
  Hdf5DatasetWriter writer(dir.path() / "train.h5", testInfo());
  for (const char* name : {"format", "vocab_size", "tokenizer_hash", "num_tokens", "template"}) {
    try {
      writer.setStringAttribute(name, "x");
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + name + "'"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(writer.setStringAttribute("", "x"), Error);
  writer.finish();
  EXPECT_THROW(writer.setStringAttribute("late", "x"), Error);
}

TEST(Hdf5Dataset, OpensWithoutFileLocking) {
  // Shared filesystems (NFS, Lustre) often refuse HDF5's file locks; the reader takes none.
  // A conflicting exclusive lock held elsewhere stands in for such a mount: HDF5's default
  // open takes a shared lock and fails against it.
  TempDir dir;
  const auto samples = makeSamples(5);
  const auto path = writeWithLoom(dir.path() / "locked.h5", samples);
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  Hdf5Dataset dataset(path, kVocab);
  expectSamplesEqual(dataset, samples);
  ::close(fd);
}

TEST(Hdf5Dataset, CompressedRoundTrip) {
  TempDir dir;
  const auto samples = makeSamples(30, 11);
  Hdf5DatasetWriter::Options options;
  options.chunk_elements = 64;
  options.deflate_level = 4;
  const auto path = writeWithLoom(dir.path() / "z.h5", samples, options);
  expectSamplesEqual(Hdf5Dataset(path), samples);
}

TEST(Hdf5Dataset, ReadSamplesFollowsRequestOrder) {
  TempDir dir;
  const auto samples = makeSamples(40);
  const auto path = writeWithLoom(dir.path() / "t.h5", samples);
  Hdf5Dataset dataset(path);
  // Adjacent runs (merged into one read), gaps, the empty sample, reordering, a duplicate.
  const std::vector<int64_t> ids = {5, 6, 7, 3, 30, 2, 31, 39, 0, 6};
  const SampleBatch batch = dataset.readSamples(ids);
  ASSERT_EQ(batch.sample_ids, ids);
  ASSERT_EQ(batch.offsets.size(), ids.size() + 1);
  for (size_t j = 0; j < ids.size(); ++j) {
    const auto& expected = samples[static_cast<size_t>(ids[j])];
    ASSERT_EQ(batch.length(static_cast<int64_t>(j)), static_cast<int64_t>(expected.tokens.size()));
    EXPECT_TRUE(std::equal(expected.tokens.begin(), expected.tokens.end(),
                           batch.tokensOf(static_cast<int64_t>(j))))
        << "sample " << ids[j];
    EXPECT_TRUE(std::equal(expected.mask.begin(), expected.mask.end(),
                           batch.lossMaskOf(static_cast<int64_t>(j))))
        << "sample " << ids[j];
  }
  EXPECT_EQ(dataset.readSamples({}).size(), 0);
}

TEST(Hdf5Dataset, WriterStoresFirstTokenAsNonTarget) {
  TempDir dir;
  const auto path = dir.path() / "m.h5";
  {
    Hdf5DatasetWriter writer(path, testInfo());
    writer.append({1, 2, 3, 4}, {1, 1, 0, 1});
    EXPECT_EQ(writer.numLossTokens(), 2);
    writer.finish();
  }
  Hdf5Dataset dataset(path);
  EXPECT_EQ(dataset.readSample(0).loss_mask, (std::vector<uint8_t>{0, 1, 0, 1}));
  EXPECT_EQ(dataset.lossTokens()[0], 2);
}

TEST(Hdf5Dataset, WriterRefusesIdsOutsideVocabulary) {
  TempDir dir;
  Hdf5DatasetWriter writer(dir.path() / "v.h5", testInfo());
  EXPECT_THROW(writer.append({1, static_cast<int32_t>(kVocab)}, {0, 1}), Error);
  EXPECT_THROW(writer.append({1, 2}, {0, 2}), Error);
}

TEST(Hdf5Dataset, H5pyFileReadsIdentically) {
  TempDir dir;
  const auto samples = makeSamples(25, 3);
  const auto path = writeWithH5py(dir, "py", samples);
  Hdf5Dataset dataset(path, kVocab);
  expectSamplesEqual(dataset, samples);
  EXPECT_EQ(dataset.info().template_name, "chat");
  EXPECT_EQ(dataset.info().source_files, std::vector<std::string>{"a.jsonl"});
}

TEST(Hdf5Dataset, H5pyReadsLoomFileIdentically) {
  TempDir dir;
  const auto samples = makeSamples(20, 5);
  const auto path = writeWithLoom(dir.path() / "loom.h5", samples);
  const auto dump = dir.path() / "dump.json";
  auto result =
      testing::runPythonScript("hdf5_dataset_tool.py", {"dump", path.string(), dump.string()});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(testing::readFile(dump));
  std::vector<int32_t> tokens;
  std::vector<int> mask;
  std::vector<int64_t> offsets{0};
  std::vector<int64_t> loss;
  for (const auto& s : samples) {
    tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
    mask.insert(mask.end(), s.mask.begin(), s.mask.end());
    offsets.push_back(offsets.back() + static_cast<int64_t>(s.tokens.size()));
    loss.push_back(targetsOf(s));
  }
  EXPECT_EQ(json["tokens"].get<std::vector<int32_t>>(), tokens);
  EXPECT_EQ(json["loss_mask"].get<std::vector<int>>(), mask);
  EXPECT_EQ(json["offsets"].get<std::vector<int64_t>>(), offsets);
  EXPECT_EQ(json["loss_tokens"].get<std::vector<int64_t>>(), loss);
  EXPECT_EQ(json["dtypes"]["tokens"], "int32");
  EXPECT_EQ(json["dtypes"]["loss_mask"], "uint8");
  EXPECT_EQ(json["dtypes"]["offsets"], "int64");
  EXPECT_EQ(json["dtypes"]["loss_tokens"], "int32");
  EXPECT_FALSE(json["chunks"]["tokens"].is_null()) << "/tokens must be chunked";
  EXPECT_EQ(json["attrs"]["format"], kTokensFormatName);
  EXPECT_EQ(json["attrs"]["format_version"], kTokensFormatVersion);
  EXPECT_EQ(json["attrs"]["vocab_size"], kVocab);
  EXPECT_EQ(json["attrs"]["source_files"], nlohmann::json({"a.jsonl", "b.jsonl"}));
  EXPECT_EQ(json["attrs"]["num_samples"], 20);
  EXPECT_EQ(json["attrs"]["num_tokens"], offsets.back());
}

TEST(Hdf5Dataset, FirstTokenMarkedByAnotherToolIsIgnored) {
  TempDir dir;
  const auto samples = makeSamples(10, 9);
  const auto path = writeWithH5py(dir, "mask0", samples, "mask0", {});
  Hdf5Dataset dataset(path);
  EXPECT_TRUE(dataset.info().source_files.empty());
  for (int64_t i = 0; i < dataset.numSamples(); ++i) {
    EXPECT_NO_THROW(dataset.readSample(i));
    EXPECT_EQ(dataset.lossTokens()[static_cast<size_t>(i)],
              targetsOf(samples[static_cast<size_t>(i)]));
  }
}

TEST(Hdf5Dataset, LossTokensWithinTruncation) {
  TempDir dir;
  const auto samples = makeSamples(30, 13);
  const auto path = writeWithLoom(dir.path() / "l.h5", samples);
  Hdf5Dataset dataset(path);
  for (int64_t cut : {1, 5, 17, 1000}) {
    const auto within = dataset.lossTokensWithin(cut);
    for (size_t i = 0; i < samples.size(); ++i) {
      int64_t expected = 0;
      const auto end = std::min<size_t>(samples[i].mask.size(), static_cast<size_t>(cut));
      for (size_t t = 1; t < end; ++t) expected += samples[i].mask[t];
      EXPECT_EQ(within[i], expected) << "sample " << i << " cut " << cut;
    }
  }
}

TEST(Hdf5Dataset, MissingFile) {
  TempDir dir;
  const auto path = dir.path() / "absent.h5";
  expectInputError([&] { Hdf5Dataset d(path); }, {path.string(), "no such file"});
}

TEST(Hdf5Dataset, NotHdf5) {
  TempDir dir;
  const auto path = dir.write("text.h5", "{\"instruction\": \"not hdf5\"}\n");
  expectInputError([&] { Hdf5Dataset d(path); }, {path.string(), "not an HDF5 file"});
}

TEST(Hdf5Dataset, TruncatedFile) {
  TempDir dir;
  const auto path = writeWithLoom(dir.path() / "cut.h5", makeSamples(200));
  fs::resize_file(path, fs::file_size(path) / 2);
  expectInputError([&] { Hdf5Dataset d(path); }, {path.string(), "truncated"});
}

// Token files found by the hdf5_index fuzz target that crash libhdf5 1.10 itself (a SEGV in
// H5HG_read reading a variable-length string attribute; tests/fuzz/libhdf5_faults): the open
// probes the file in a child process, so each is refused as damaged (an InputError, exit 2)
// instead of taking the process down.
TEST(Hdf5Dataset, FilesThatCrashLibhdf5AreRefusedAsDamaged) {
  const auto faults = testing::sourceDir() / "tests" / "fuzz" / "libhdf5_faults";
  int seen = 0;
  for (const auto& entry : fs::directory_iterator(faults)) {
    if (entry.path().filename().string().rfind("hdf5_index-crash-", 0) != 0) continue;
    ++seen;
    TempDir dir;
    const auto path = dir.path() / "train.h5";
    fs::copy_file(entry.path(), path);
    SCOPED_TRACE(entry.path().filename().string());
    expectInputError([&] { Hdf5Dataset d(path); },
                     {path.string(), "libhdf5 crashed reading it", "SIGSEGV", "prepare it again"});
  }
  EXPECT_EQ(seen, 3) << "the three files of " << faults;
}

struct Corruption {
  std::string mode;
  std::vector<std::string> message_parts;
};

class Hdf5Corruption : public ::testing::TestWithParam<Corruption> {};

TEST_P(Hdf5Corruption, RefusedOnOpenWithPlace) {
  TempDir dir;
  const auto& c = GetParam();
  const auto path = writeWithH5py(dir, "bad", makeSamples(12), c.mode);
  auto parts = c.message_parts;
  parts.push_back(path.string());
  expectInputError([&] { Hdf5Dataset d(path); }, parts);
}

INSTANTIATE_TEST_SUITE_P(
    Files, Hdf5Corruption,
    ::testing::Values(
        Corruption{"format-name", {"'format' is 'not-loom'", "expected 'loom-tokens'"}},
        Corruption{"no-format", {"no root attribute 'format'"}},
        Corruption{"format-version", {"format_version 2", "expected 1"}},
        Corruption{"nonmonotonic-offsets", {"sample 2", "/offsets decreases"}},
        Corruption{"offsets-length", {"/offsets has 12 entries", "num_samples + 1 = 13"}},
        Corruption{"mask-length", {"/loss_mask has", "expected equal lengths"}},
        Corruption{"offsets-end", {"/offsets ends at", "/tokens has"}},
        Corruption{"missing-tokens", {"missing dataset /tokens"}},
        Corruption{"count-attribute", {"'num_samples' says 13", "hold 12"}},
        Corruption{"float-tokens", {"/tokens should hold integers"}},
        // Found by reading the code, confirmed by hdf5_index_fuzz: the difference with a huge
        // negative offset overflowed (undefined behaviour: UBSan in the fuzz build reports it,
        // g++ happens to give the right message), and an extent with nothing stored behind it
        // made the reader allocate 8 TB.
        Corruption{"offsets-overflow", {"sample 2", "/offsets decreases"}},
        Corruption{"unstored-extent",
                   {"/offsets has 1099511627777 entries of 8 bytes", "stores only 0 bytes"}}),
    [](const ::testing::TestParamInfo<Corruption>& info) {
      std::string name = info.param.mode;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

// Every sample is checked when the file is opened (one pass over the ids), in the probe child
// and, with the probe switched off (the fuzz target's hook), in-process: a bad id in a sample
// that a short run would never read is still refused before training.
TEST(Hdf5Dataset, TokenOutsideVocabularyNamedOnOpen) {
  TempDir dir;
  const auto path = writeWithH5py(dir, "tok", makeSamples(12), "bad-token");
  const std::vector<std::string> parts = {path.string(), "sample 2 position 1", "token id 500",
                                          "outside the vocabulary [0, 500)"};
  expectInputError([&] { Hdf5Dataset d(path); }, parts);
  setenv("LOOM_TEST_HDF5_IN_PROCESS", "1", 1);
  expectInputError([&] { Hdf5Dataset d(path); }, parts);
  unsetenv("LOOM_TEST_HDF5_IN_PROCESS");
}

TEST(Hdf5Dataset, LossCountDisagreeingWithMaskNamedOnOpen) {
  TempDir dir;
  const auto path = writeWithH5py(dir, "loss", makeSamples(12), "loss-count");
  expectInputError([&] { Hdf5Dataset d(path); }, {path.string(), "sample 1", "/loss_tokens says"});
}

// Samples are checked in blocks of whole samples; a file whose samples straddle many blocks
// opens, and the last sample's bad id is found.
TEST(Hdf5Dataset, OpenChecksEverySampleAcrossBlocks) {
  TempDir dir;
  std::vector<TestSample> samples = makeSamples(3);
  samples[1].tokens.assign(size_t{5} << 20, 7);  // longer than one block of 4 Mi tokens
  samples[1].mask.assign(samples[1].tokens.size(), 0);
  const auto good = writeWithLoom(dir.path() / "good.h5", samples);
  EXPECT_NO_THROW(Hdf5Dataset{good});
}

TEST(Hdf5Dataset, VocabularyLargerThanModelRefused) {
  TempDir dir;
  const auto path = writeWithLoom(dir.path() / "v.h5", makeSamples(5));
  expectInputError([&] { Hdf5Dataset d(path, kVocab - 1); },
                   {path.string(), "vocabulary of 500", "499 embedding rows"});
  EXPECT_NO_THROW(Hdf5Dataset(path, kVocab));
  EXPECT_NO_THROW(Hdf5Dataset(path, kVocab + 64));  // padded embedding matrix
}

TEST(Hdf5Dataset, AbandonedWriterLeavesNothing) {
  TempDir dir;
  const auto path = dir.path() / "out.h5";
  const auto samples = makeSamples(100);
  try {
    Hdf5DatasetWriter writer(path, testInfo(), {16, 0});
    for (size_t i = 0; i < samples.size(); ++i) {
      writer.append(samples[i].tokens, samples[i].mask);
      if (i == 60) throw std::runtime_error("tokenizer failed mid-way");
    }
    writer.finish();
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir.path())) << "a temporary file was left behind";
}

TEST(Hdf5Dataset, AbandonedWriterKeepsPreviousFile) {
  TempDir dir;
  const auto path = writeWithLoom(dir.path() / "out.h5", makeSamples(10));
  const auto before = testing::readFile(path);
  {
    Hdf5DatasetWriter writer(path, testInfo());
    writer.append({1, 2, 3}, {0, 1, 1});
  }
  EXPECT_EQ(testing::readFile(path), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

TEST(Prefetcher, ReadsInSubmissionOrder) {
  TempDir dir;
  const auto samples = makeSamples(40);
  const auto path = writeWithLoom(dir.path() / "p.h5", samples);
  Hdf5Dataset dataset(path);
  Prefetcher prefetcher(dataset);
  const std::vector<std::vector<int64_t>> steps = {{1, 2, 3}, {39, 0}, {}, {7, 7, 20}};
  for (const auto& ids : steps) prefetcher.submit(ids);
  auto side = prefetcher.request({10, 11});
  EXPECT_EQ(prefetcher.pending(), 4);
  for (const auto& ids : steps) {
    const SampleBatch batch = prefetcher.next();
    ASSERT_EQ(batch.sample_ids, ids);
    for (size_t j = 0; j < ids.size(); ++j) {
      const auto& expected = samples[static_cast<size_t>(ids[j])].tokens;
      EXPECT_TRUE(
          std::equal(expected.begin(), expected.end(), batch.tokensOf(static_cast<int64_t>(j))));
    }
  }
  EXPECT_EQ(side.get().sample_ids, (std::vector<int64_t>{10, 11}));
  EXPECT_EQ(prefetcher.pending(), 0);
  EXPECT_THROW(prefetcher.next(), Error);
}

TEST(Prefetcher, ReadErrorRethrownByNext) {
  TempDir dir;
  // Opening checks every sample, so the bad id comes after the open: the file is overwritten
  // in place (same inode, same layout: only one token differs) while the dataset holds it.
  const auto path = writeWithH5py(dir, "good", makeSamples(12));
  const auto bad = writeWithH5py(dir, "bad", makeSamples(12), "bad-token");
  ASSERT_EQ(fs::file_size(path), fs::file_size(bad));
  Hdf5Dataset dataset(path);
  {
    std::ifstream from(bad, std::ios::binary);
    std::fstream to(path, std::ios::binary | std::ios::in | std::ios::out);
    to << from.rdbuf();
  }
  Prefetcher prefetcher(dataset);
  prefetcher.submit({0, 1});
  prefetcher.submit({2});
  prefetcher.submit({3});  // abandoned in the destructor: must not hang or crash
  EXPECT_NO_THROW(prefetcher.next());
  expectInputError([&] { prefetcher.next(); }, {"sample 2"});
}

}  // namespace
}  // namespace loom
