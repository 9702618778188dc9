#include "loom/data/dataset_inspect.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <ostream>
#include <sstream>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/log.hpp"
#include "loom/data/data_report.hpp"
#include "loom/data/tokenizer.hpp"

namespace loom {

namespace {

constexpr const char* kOpenMark = "\xE2\x9F\xA6";   // ⟦
constexpr const char* kCloseMark = "\xE2\x9F\xA7";  // ⟧
constexpr const char* kDim = "\x1b[2m";
constexpr const char* kReset = "\x1b[0m";

int64_t percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

DatasetSummary summarizeDataset(const Hdf5Dataset& dataset) {
  DatasetSummary s;
  s.path = dataset.path();
  s.info = dataset.info();
  std::error_code ec;
  const auto size = std::filesystem::file_size(dataset.path(), ec);
  s.file_bytes = ec ? -1 : static_cast<int64_t>(size);
  std::vector<int64_t> lengths = dataset.lengths();
  const auto& loss = dataset.lossTokens();
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (lengths[i] == 0) ++s.empty_samples;
    if (loss[i] == 0) ++s.no_loss_samples;
  }
  std::sort(lengths.begin(), lengths.end());
  if (!lengths.empty()) {
    s.min_length = lengths.front();
    s.max_length = lengths.back();
    s.mean_length = static_cast<double>(dataset.numTokens()) / static_cast<double>(lengths.size());
  }
  s.p50_length = percentile(lengths, 0.50);
  s.p90_length = percentile(lengths, 0.90);
  s.p99_length = percentile(lengths, 0.99);
  return s;
}

std::string formatDatasetSummary(const DatasetSummary& s) {
  const auto& i = s.info;
  std::ostringstream out;
  char mean[32];
  std::snprintf(mean, sizeof(mean), "%.1f", s.mean_length);
  out << "file            " << s.path.string() << " (" << s.file_bytes << " bytes)\n"
      << "format          " << kTokensFormatName << " version " << i.format_version << "\n"
      << "created         " << i.created << "\n"
      << "samples         " << i.num_samples << "\n"
      << "tokens          " << i.num_tokens << "\n"
      << "loss tokens     " << i.num_loss_tokens;
  if (i.num_tokens > 0) {
    char pct[32];
    std::snprintf(
        pct, sizeof(pct), " (%.1f%% of tokens)",
        100.0 * static_cast<double>(i.num_loss_tokens) / static_cast<double>(i.num_tokens));
    out << pct;
  }
  out << "\n"
      << "length          min " << s.min_length << " / mean " << mean << " / p50 " << s.p50_length
      << " / p90 " << s.p90_length << " / p99 " << s.p99_length << " / max " << s.max_length << "\n"
      << "empty samples   " << s.empty_samples << "\n"
      << "no-loss samples " << s.no_loss_samples << "\n"
      << "vocab size      " << i.vocab_size << "\n"
      << "tokenizer hash  " << (i.tokenizer_hash.empty() ? "(none)" : i.tokenizer_hash) << "\n"
      << "eos / pad id    " << i.eos_id << " / " << i.pad_id << "\n"
      << "template        " << (i.template_name.empty() ? "(none)" : i.template_name) << "\n"
      << "source files   ";
  if (i.source_files.empty()) out << " (none)";
  for (const auto& f : i.source_files) out << " " << f;
  out << "\n";
  return out.str();
}

std::string renderSample(const Sample& sample, const Tokenizer* tokenizer, MaskStyle style) {
  std::string out;
  const size_t n = sample.tokens.size();
  size_t begin = 0;
  while (begin < n) {
    // Position 0 is never a target, whatever the file says.
    auto target = [&](size_t t) { return t > 0 && sample.loss_mask[t] != 0; };
    const bool is_target = target(begin);
    size_t end = begin + 1;
    while (end < n && target(end) == is_target) ++end;
    const std::vector<int32_t> run(sample.tokens.begin() + static_cast<std::ptrdiff_t>(begin),
                                   sample.tokens.begin() + static_cast<std::ptrdiff_t>(end));
    std::string text;
    if (tokenizer) {
      text = tokenizer->decode(run);
    } else {
      for (size_t k = 0; k < run.size(); ++k) {
        if (k > 0 || (begin > 0)) text += ' ';
        text += std::to_string(run[k]);
      }
    }
    if (is_target) {
      out += text;
    } else if (style == MaskStyle::kAnsi) {
      out += kDim + text + kReset;
    } else {
      out += kOpenMark + text + kCloseMark;
    }
    begin = end;
  }
  return out;
}

void inspectDataset(const InspectDataOptions& o, std::ostream& out) {
  const Hdf5Dataset dataset(o.data);
  out << formatDatasetSummary(summarizeDataset(dataset));
  const std::optional<std::string> report = dataset.stringAttribute(kPrepareReportAttribute);
  LOOM_INPUT_CHECK(report || o.report.empty(),
                   "--report: " << o.data.string()
                                << " holds no data report (it was prepared before Loom stored "
                                   "one); prepare it again to get one");
  if (report) {
    const auto json = nlohmann::ordered_json::parse(*report);
    out << "\ndata report (from trainer prepare)\n" << DataReport::formatTable(json);
    if (!o.report.empty()) {
      writeFileAtomic(o.report, json.dump(2) + "\n");
      out << "report written to " << o.report.string() << "\n";
    }
  }

  std::optional<Tokenizer> tokenizer;
  if (!o.tokenizer_dir.empty()) {
    tokenizer = Tokenizer::fromDir(o.tokenizer_dir);
    const auto& recorded = dataset.info().tokenizer_hash;
    if (!recorded.empty() && recorded != tokenizer->contentHash()) {
      LOOM_WARN("the tokenizer in " << o.tokenizer_dir.string() << " (hash "
                                    << tokenizer->contentHash() << ") is not the one "
                                    << o.data.string() << " was prepared with (hash " << recorded
                                    << "); decoded text may be wrong");
    }
  }

  std::vector<int64_t> indices = o.samples;
  if (indices.empty()) {
    for (int64_t i = 0; i < std::min(o.count, dataset.numSamples()); ++i) indices.push_back(i);
  }
  for (int64_t i : indices) {
    LOOM_INPUT_CHECK(i >= 0 && i < dataset.numSamples(),
                     "--sample " << i << ": " << o.data.string() << " has " << dataset.numSamples()
                                 << " samples (0.." << dataset.numSamples() - 1 << ")");
  }
  if (indices.empty()) return;
  out << "\n"
      << (o.style == MaskStyle::kAnsi ? "dimmed text" : std::string(kOpenMark) + "..." + kCloseMark)
      << " is context (no loss); the rest is what the model is trained to produce"
      << (tokenizer ? "" : " (token ids: pass --tokenizer DIR to decode)") << "\n";
  for (int64_t i : indices) {
    const Sample sample = dataset.readSample(i);
    out << "\n--- sample " << i << ": " << sample.tokens.size() << " tokens, "
        << dataset.lossTokens()[static_cast<size_t>(i)] << " loss tokens ---\n"
        << renderSample(sample, tokenizer ? &*tokenizer : nullptr, o.style) << "\n";
  }
}

}  // namespace loom
