// See data_report.hpp.

#include "loom/data/data_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "loom/core/format.hpp"
#include "loom/core/splitmix.hpp"

namespace loom {

namespace {

using nlohmann::ordered_json;

// splitmix64 over h ^ v: cheap, and every bit of v reaches every bit of h.
uint64_t mix(uint64_t h, uint64_t v) { return splitMix64(h ^ v); }

// Grown to the longest length seen (not seq_len, which may be huge when nothing is cut).
void count(std::vector<int64_t>& histogram, int64_t length, int64_t copies) {
  const auto i = static_cast<size_t>(std::max<int64_t>(length, 0));
  if (i >= histogram.size()) histogram.resize(i + 1, 0);
  histogram[i] += copies;
}

ordered_json lengthStats(const std::vector<int64_t>& histogram) {
  int64_t n = 0;
  double sum = 0;
  int64_t max = 0;
  for (size_t len = 0; len < histogram.size(); ++len) {
    n += histogram[len];
    sum += static_cast<double>(histogram[len]) * static_cast<double>(len);
    if (histogram[len] > 0) max = static_cast<int64_t>(len);
  }
  auto percentile = [&](double p) -> int64_t {
    if (n == 0) return 0;
    const auto rank = static_cast<int64_t>(std::ceil(p * static_cast<double>(n) - 1e-9));
    int64_t seen = 0;
    for (size_t len = 0; len < histogram.size(); ++len) {
      seen += histogram[len];
      if (seen >= std::max<int64_t>(rank, 1)) return static_cast<int64_t>(len);
    }
    return max;
  };
  return {{"mean", n > 0 ? sum / static_cast<double>(n) : 0.0},
          {"p50", percentile(0.50)},
          {"p90", percentile(0.90)},
          {"p99", percentile(0.99)},
          {"max", max}};
}

ordered_json splitJson(int64_t samples, int64_t tokens, int64_t loss_tokens) {
  return {{"samples", samples},
          {"tokens", tokens},
          {"loss_tokens", loss_tokens},
          {"loss_share", tokens > 0 ? static_cast<double>(loss_tokens) / tokens : 0.0}};
}

}  // namespace

DataReport::DataReport(int64_t seq_len, std::vector<std::string> sources,
                       std::vector<double> weights)
    : seq_len_(seq_len) {
  sources_.resize(sources.size());
  for (size_t s = 0; s < sources.size(); ++s) {
    sources_[s].path = std::move(sources[s]);
    if (s < weights.size()) sources_[s].weight = weights[s];
  }
}

uint64_t DataReport::sampleHash(uint64_t hash, const std::vector<int32_t>& ids,
                                const std::vector<uint8_t>& mask) {
  hash = mix(hash, ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    hash = mix(hash, (static_cast<uint64_t>(static_cast<uint32_t>(ids[i])) << 1) | mask[i]);
  }
  return hash;
}

void DataReport::addRecord(size_t source, Outcome outcome, uint64_t hash) {
  ++read_;
  ++sources_[source].records;
  switch (outcome) {
    case Outcome::kEmpty:
      ++empty_;
      return;
    case Outcome::kDropped:
      ++dropped_;
      return;
    case Outcome::kTruncated:
      ++truncated_;
      break;
    case Outcome::kKept:
      break;
  }
  ++kept_;
  if (!seen_.insert(hash).second) ++duplicates_;
}

void DataReport::addNotInMix(size_t source, int64_t n) {
  read_ += n;
  not_in_mix_ += n;
  sources_[source].records += n;
  sources_[source].not_in_mix += n;
}

void DataReport::addSample(size_t source, bool validation, const std::vector<int32_t>& ids,
                           const std::vector<uint8_t>& mask, int64_t copies) {
  const auto length = static_cast<int64_t>(ids.size());
  // As stored: position 0 is never a target.
  int64_t answer = 0;
  for (size_t i = 1; i < mask.size(); ++i) answer += mask[i];
  for (Split* split : {validation ? &val_ : &train_,
                       validation ? &sources_[source].val : &sources_[source].train}) {
    split->samples += copies;
    split->tokens += length * copies;
    split->loss_tokens += answer * copies;
  }
  count(prompt_lengths_, length - answer, copies);
  count(answer_lengths_, answer, copies);
  count(sample_lengths_, length, copies);
}

ordered_json DataReport::toJson(const ordered_json& settings, const std::string& train_path,
                                const std::string& val_path) const {
  ordered_json report;
  report["settings"] = settings;
  report["records"] = {{"read", read_},
                       {"kept", kept_},
                       {"empty", empty_},
                       {"truncated", truncated_},
                       {"dropped", dropped_},
                       {"duplicates", duplicates_},
                       {"not_in_mix", not_in_mix_}};
  ordered_json splits;
  splits["train"] = splitJson(train_.samples, train_.tokens, train_.loss_tokens);
  splits["train"]["path"] = train_path;
  if (!val_path.empty()) {
    splits["val"] = splitJson(val_.samples, val_.tokens, val_.loss_tokens);
    splits["val"]["path"] = val_path;
  }
  report["splits"] = splits;
  report["lengths"] = {{"prompt", lengthStats(prompt_lengths_)},
                       {"answer", lengthStats(answer_lengths_)},
                       {"sample", lengthStats(sample_lengths_)}};
  // Ten bins of equal width over the lengths [0, top], top = the longest sample (at most
  // seq_len); the last bin may be narrower.
  const int64_t top = std::min<int64_t>(
      seq_len_, std::max<int64_t>(0, static_cast<int64_t>(sample_lengths_.size()) - 1));
  const int64_t width = std::max<int64_t>(1, (top + 1 + 9) / 10);
  ordered_json edges = ordered_json::array();
  ordered_json counts = ordered_json::array();
  for (int64_t begin = 0; begin <= top; begin += width) {
    int64_t n = 0;
    const int64_t end = std::min(begin + width, top + 1);
    for (int64_t len = begin; len < end && len < static_cast<int64_t>(sample_lengths_.size());
         ++len) {
      n += sample_lengths_[static_cast<size_t>(len)];
    }
    edges.push_back(begin);
    counts.push_back(n);
  }
  edges.push_back(top + 1);
  report["histogram"] = {{"edges", edges}, {"counts", counts}};
  ordered_json sources = ordered_json::array();
  for (const auto& s : sources_) {
    ordered_json j = {{"path", s.path}};
    j["weight"] = s.weight ? ordered_json(*s.weight) : ordered_json(nullptr);
    j["records"] = s.records;
    j["not_in_mix"] = s.not_in_mix;
    j["train"] = splitJson(s.train.samples, s.train.tokens, s.train.loss_tokens);
    if (!val_path.empty()) j["val"] = splitJson(s.val.samples, s.val.tokens, s.val.loss_tokens);
    sources.push_back(j);
  }
  report["sources"] = sources;
  return report;
}

std::string DataReport::formatTable(const ordered_json& r) {
  std::ostringstream out;
  char buf[256];
  const auto& rec = r.at("records");
  out << "records   read " << rec.at("read") << ", kept " << rec.at("kept") << ", empty "
      << rec.at("empty") << ", truncated " << rec.at("truncated") << ", dropped "
      << rec.at("dropped") << ", duplicates " << rec.at("duplicates");
  if (rec.at("not_in_mix").get<int64_t>() > 0) out << ", not in mix " << rec.at("not_in_mix");
  out << "\n";
  for (const auto& [name, split] : r.at("splits").items()) {
    std::snprintf(buf, sizeof(buf), "%-9s %lld samples, %s tokens, loss share %.1f%%  (%s)\n",
                  name.c_str(), static_cast<long long>(split.at("samples").get<int64_t>()),
                  formatCount(split.at("tokens").get<double>()).c_str(),
                  100.0 * split.at("loss_share").get<double>(),
                  split.at("path").get<std::string>().c_str());
    out << buf;
  }
  out << "tokens        mean      p50      p90      p99      max\n";
  for (const char* what : {"prompt", "answer", "sample"}) {
    const auto& l = r.at("lengths").at(what);
    std::snprintf(buf, sizeof(buf), "  %-8s %7.1f %8lld %8lld %8lld %8lld\n", what,
                  l.at("mean").get<double>(), static_cast<long long>(l.at("p50").get<int64_t>()),
                  static_cast<long long>(l.at("p90").get<int64_t>()),
                  static_cast<long long>(l.at("p99").get<int64_t>()),
                  static_cast<long long>(l.at("max").get<int64_t>()));
    out << buf;
  }
  const auto& edges = r.at("histogram").at("edges");
  const auto& counts = r.at("histogram").at("counts");
  int64_t most = 1;
  for (const auto& c : counts) most = std::max(most, c.get<int64_t>());
  out << "length histogram\n";
  for (size_t k = 0; k < counts.size(); ++k) {
    const int64_t c = counts[k].get<int64_t>();
    const std::string bar(static_cast<size_t>((c * 30 + most - 1) / most), '#');
    std::snprintf(buf, sizeof(buf), "  [%6lld, %6lld)  %-30s %lld\n",
                  static_cast<long long>(edges[k].get<int64_t>()),
                  static_cast<long long>(edges[k + 1].get<int64_t>()), bar.c_str(),
                  static_cast<long long>(c));
    out << buf;
  }
  if (r.at("sources").size() > 1) {
    out << "sources\n";
    for (const auto& s : r.at("sources")) {
      out << "  " << s.at("path").get<std::string>();
      if (!s.at("weight").is_null()) out << "  weight " << s.at("weight").get<double>();
      out << "  records " << s.at("records") << ", train " << s.at("train").at("samples");
      if (s.contains("val")) out << ", val " << s.at("val").at("samples");
      if (s.at("not_in_mix").get<int64_t>() > 0) out << ", not in mix " << s.at("not_in_mix");
      out << "\n";
    }
  }
  const auto& settings = r.at("settings");
  if (settings.contains("template")) {
    out << "template  " << settings.at("template").at("description").get<std::string>()
        << " (sha256 " << settings.at("template").at("sha256").get<std::string>().substr(0, 12)
        << ")\n";
  }
  return out.str();
}

}  // namespace loom
