// `trainer prepare`: a three-stage pipeline over chunks of records. The calling thread reads
// chunk k+1 (record_reader) and writes chunk k-1 while a pool of workers turns chunk k into
// samples (sample_maker); results are written in record order, so the files do not depend on
// the number of threads. Errors are stored with the record they belong to and raised when
// that record's turn to be written comes, so the first bad record in input order is the one
// reported, whatever the threads.

#include "loom/data/prepare.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>
#include <thread>

#include "field_template.hpp"
#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/format.hpp"
#include "loom/core/log.hpp"
#include "loom/core/worker_pool.hpp"
#include "loom/data/data_report.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/mix_plan.hpp"
#include "loom/data/tokenizer.hpp"
#include "prepare_progress.hpp"
#include "record_reader.hpp"
#include "sample_maker.hpp"

namespace loom {

namespace {

using nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
using detail::Piece;
using detail::RecordStatus;

struct SplitSink {
  std::unique_ptr<Hdf5DatasetWriter> writer;
  PrepareSplitSummary summary;

  void add(const Piece& p) {
    writer->append(p.ids, p.mask);
    const auto n = static_cast<int64_t>(p.ids.size());
    summary.min_length = summary.samples == 0 ? n : std::min(summary.min_length, n);
    summary.max_length = std::max(summary.max_length, n);
    ++summary.samples;
    summary.tokens += n;
  }

  void finish() {
    writer->finish();
    summary.loss_tokens = writer->numLossTokens();
    summary.mean_length =
        summary.samples > 0 ? static_cast<double>(summary.tokens) / summary.samples : 0.0;
  }
};

bool samePath(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  if (std::filesystem::exists(a, ec) && std::filesystem::exists(b, ec)) {
    return std::filesystem::equivalent(a, b, ec);
  }
  return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}

bool isChatShaped(PrepareFormat f) {
  return f == PrepareFormat::kAlpaca || f == PrepareFormat::kChat || f == PrepareFormat::kShareGpt;
}

// Options first: nothing is read or created before they are known to be consistent.
void checkOptions(const PrepareOptions& o) {
  const bool is_chat = isChatShaped(o.format);
  const bool is_template = o.format == PrepareFormat::kTemplate;
  LOOM_INPUT_CHECK(!o.inputs.empty(), "--input: give at least one input file");
  LOOM_INPUT_CHECK(!o.output.empty(), "--output: the output file is required");
  LOOM_INPUT_CHECK(o.seq_len >= 2, "--seq-len must be at least 2, got " << o.seq_len);
  LOOM_INPUT_CHECK(o.val_fraction >= 0.0 && o.val_fraction < 1.0,
                   "--val-fraction must be in [0, 1), got " << o.val_fraction);
  LOOM_INPUT_CHECK(o.val_fraction == 0.0 || !o.val_output.empty(),
                   "--val-fraction " << o.val_fraction << " needs --val-output FILE");
  LOOM_INPUT_CHECK(o.val_output.empty() || o.val_fraction > 0.0,
                   "--val-output needs --val-fraction F > 0");
  LOOM_INPUT_CHECK(o.threads >= 0, "--threads must be >= 0 (0 = all cores), got " << o.threads);
  LOOM_INPUT_CHECK(!is_template || (!o.prompt_template.empty() && !o.completion_template.empty()),
                   "--format template needs --prompt-template and --completion-template");
  LOOM_INPUT_CHECK(is_template || (o.prompt_template.empty() && o.completion_template.empty()),
                   "--prompt-template / --completion-template apply to --format template only");
  LOOM_INPUT_CHECK(is_chat || o.chat_template == "auto",
                   "--chat-template applies to --format alpaca, chat and sharegpt only");
  LOOM_INPUT_CHECK(is_chat || o.system_prompt.empty(),
                   "--system applies to --format alpaca, chat and sharegpt only");
  LOOM_INPUT_CHECK(is_chat || !o.thinking,
                   "--thinking applies to --format alpaca, chat and sharegpt only");
  LOOM_INPUT_CHECK(is_chat || is_template || o.train_on == TrainOn::kAllAssistant,
                   "--train-on applies to --format alpaca, chat, sharegpt and template only "
                   "(text trains on every token)");
  LOOM_INPUT_CHECK(!is_template || o.train_on != TrainOn::kLastAssistant,
                   "--train-on last-assistant needs conversations; --format template has one "
                   "completion (use all-assistant or all)");
  LOOM_INPUT_CHECK(o.fields.reasoning.empty() || o.format == PrepareFormat::kAlpaca,
                   "--fields reasoning=" << o.fields.reasoning
                                         << " applies to --format alpaca (chat messages carry "
                                            "their own reasoning_content)");
  LOOM_INPUT_CHECK(o.weights.empty() || o.weights.size() == o.inputs.size(),
                   "--input: give a weight to every input or to none (FILE:WEIGHT)");
  for (size_t i = 0; i < o.weights.size(); ++i) {
    LOOM_INPUT_CHECK(std::isfinite(o.weights[i]) && o.weights[i] > 0,
                     "--input " << o.inputs[i].string() << ": the weight " << o.weights[i]
                                << " is not a positive number");
  }
  LOOM_INPUT_CHECK(o.mix_records >= 0, "--mix-records must be >= 0, got " << o.mix_records);
  LOOM_INPUT_CHECK(o.mix_records == 0 || !o.weights.empty(),
                   "--mix-records needs weighted inputs (--input FILE:WEIGHT)");
  if (!o.val_output.empty()) {
    LOOM_INPUT_CHECK(!samePath(o.output, o.val_output),
                     "--val-output must differ from --output (" << o.output.string() << ")");
  }
  if (!o.report.empty()) {
    LOOM_INPUT_CHECK(!samePath(o.report, o.output) &&
                         (o.val_output.empty() || !samePath(o.report, o.val_output)),
                     "--report " << o.report.string() << " must differ from the output files");
    const auto folder = o.report.parent_path();
    LOOM_INPUT_CHECK(folder.empty() || std::filesystem::is_directory(folder),
                     "--report " << o.report.string() << ": no such folder " << folder.string());
  }
  for (const auto& in : o.inputs) {
    LOOM_INPUT_CHECK(!samePath(in, o.output) &&
                         (o.val_output.empty() || !samePath(in, o.val_output)) &&
                         (o.report.empty() || !samePath(in, o.report)),
                     in.string() << ": an input file cannot be an output file");
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------

PrepareFormat parsePrepareFormat(std::string_view name, const std::string& where) {
  if (name == "alpaca") return PrepareFormat::kAlpaca;
  if (name == "chat") return PrepareFormat::kChat;
  if (name == "sharegpt") return PrepareFormat::kShareGpt;
  if (name == "text") return PrepareFormat::kText;
  if (name == "template") return PrepareFormat::kTemplate;
  LOOM_INPUT_CHECK(false, where << ": unknown format '" << name
                                << "'; expected alpaca, chat, sharegpt, text or template");
  return PrepareFormat::kAlpaca;
}

std::string_view prepareFormatName(PrepareFormat format) {
  switch (format) {
    case PrepareFormat::kAlpaca:
      return "alpaca";
    case PrepareFormat::kChat:
      return "chat";
    case PrepareFormat::kShareGpt:
      return "sharegpt";
    case PrepareFormat::kText:
      return "text";
    case PrepareFormat::kTemplate:
      return "template";
  }
  return "?";
}

OverflowPolicy parseOverflowPolicy(std::string_view name, const std::string& where) {
  if (name == "truncate") return OverflowPolicy::kTruncate;
  if (name == "drop") return OverflowPolicy::kDrop;
  LOOM_INPUT_CHECK(false, where << ": unknown value '" << name << "'; expected truncate or drop");
  return OverflowPolicy::kTruncate;
}

std::string unescapeTemplate(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      const char n = text[i + 1];
      const char* replacement = n == 'n'    ? "\n"
                                : n == 't'  ? "\t"
                                : n == 'r'  ? "\r"
                                : n == '\\' ? "\\"
                                            : nullptr;
      if (replacement) {
        out += replacement;
        ++i;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

PrepareSummary runPrepare(const PrepareOptions& o) {
  const auto started = Clock::now();
  checkOptions(o);
  const bool is_chat = isChatShaped(o.format);
  const bool is_template = o.format == PrepareFormat::kTemplate;
  detail::SampleRecipe recipe;
  if (is_template) {
    recipe.prompt = detail::parseTemplate(o.prompt_template, "--prompt-template");
    recipe.completion = detail::parseTemplate(o.completion_template, "--completion-template");
  }
  std::vector<detail::FileKind> kinds;
  for (const auto& in : o.inputs) kinds.push_back(detail::fileKind(in, o.format));

  LOOM_INPUT_CHECK(std::filesystem::is_directory(o.tokenizer_dir),
                   "--tokenizer " << o.tokenizer_dir.string()
                                  << ": no such folder (expected a folder with tokenizer.json)");
  const auto load_start = Clock::now();
  const Tokenizer tokenizer = Tokenizer::fromDir(o.tokenizer_dir);
  const double tokenizer_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  recipe.eos = tokenizer.eosId();
  LOOM_INPUT_CHECK(is_chat || recipe.eos, (o.tokenizer_dir / "tokenizer_config.json").string()
                                              << ": no eos_token, which --format "
                                              << prepareFormatName(o.format)
                                              << " appends to every sample");
  recipe.prefix = tokenizer.specialPrefix();
  recipe.suffix = tokenizer.specialSuffix();

  ordered_json settings = {
      {"format", prepareFormatName(o.format)},
      {"seq_len", o.seq_len},
      {"on_overflow", o.on_overflow == OverflowPolicy::kDrop ? "drop" : "truncate"}};
  if (is_chat) {
    recipe.renderer =
        ChatRenderer::forTokenizer(o.tokenizer_dir, tokenizer, o.chat_template, "--chat-template");
    LOOM_INPUT_CHECK(o.fields.reasoning.empty() || recipe.renderer->readsReasoning(),
                     "--fields reasoning=" << o.fields.reasoning << ": the "
                                           << recipe.renderer->description()
                                           << " never reads a reasoning trace "
                                              "(reasoning_content), so it would be lost");
    settings["chat_template"] = recipe.renderer->description();
    settings["template"] = {{"description", recipe.renderer->description()},
                            {"sha256", recipe.renderer->hash()}};
    settings["train_on"] = trainOnName(o.train_on);
    settings["thinking"] = o.thinking ? (*o.thinking ? "on" : "off") : "auto";
    if (!o.system_prompt.empty()) settings["system"] = o.system_prompt;
    if (!o.fields.reasoning.empty()) settings["reasoning_field"] = o.fields.reasoning;
  }
  if (is_template) {
    settings["prompt"] = detail::templateSource(recipe.prompt);
    settings["completion"] = detail::templateSource(recipe.completion);
    settings["train_on"] = trainOnName(o.train_on);
  }
  if (!is_chat) {
    settings["eos"] = tokenizer.idToToken(*recipe.eos);
    if (!recipe.prefix.empty()) settings["bos"] = tokenizer.idToToken(recipe.prefix.front());
  }
  if (o.val_fraction > 0) {
    settings["val_fraction"] = o.val_fraction;
    settings["seed"] = o.seed;
  }
  if (!o.weights.empty()) {
    settings["weights"] = o.weights;
    settings["mix_seed"] = o.seed;
  }

  PrepareSummary summary;
  summary.template_description = settings.dump();
  summary.tokenizer_seconds = tokenizer_seconds;
  summary.threads = o.threads > 0
                        ? o.threads
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (const auto& in : o.inputs) {
    summary.input_bytes += static_cast<int64_t>(std::filesystem::file_size(in));
  }

  std::optional<MixPlan> plan;
  if (!o.weights.empty()) {
    std::vector<int64_t> counts;
    for (size_t i = 0; i < o.inputs.size(); ++i) {
      counts.push_back(detail::RecordReader::countRecords(o.inputs[i], kinds[i]));
    }
    plan.emplace(counts, o.weights, o.mix_records, o.seed, o.val_fraction);
    LOOM_INFO("mix of " << plan->total() << " training records from " << o.inputs.size()
                        << " inputs (seed " << o.seed << ")");
  }

  Hdf5DatasetInfo info;
  info.vocab_size = tokenizer.vocabSize();
  info.tokenizer_hash = tokenizer.contentHash();
  info.eos_id = recipe.eos.value_or(-1);
  info.pad_id = tokenizer.padId().value_or(-1);
  std::vector<std::string> sources;
  for (const auto& in : o.inputs) sources.push_back(in.string());
  info.source_files = sources;
  info.template_name = summary.template_description;

  // Writers (temporary files until finish()) are destroyed on any error, removing both.
  SplitSink train;
  train.summary.path = o.output;
  train.writer = std::make_unique<Hdf5DatasetWriter>(o.output, info);
  std::optional<SplitSink> val;
  if (o.val_fraction > 0) {
    val.emplace();
    val->summary.path = o.val_output;
    val->writer = std::make_unique<Hdf5DatasetWriter>(o.val_output, info);
  }

  const detail::SampleMaker maker(tokenizer, o, std::move(recipe));
  detail::RecordReader reader(o.inputs, kinds, plan ? &*plan : nullptr, o.seed, o.val_fraction);
  DataReport report(o.seq_len, sources, o.weights);
  detail::PrepareProgress progress(o.progress, summary.input_bytes);
  std::atomic<int64_t> bytes_done{0};
  std::atomic<int64_t> tokens_done{0};

  struct Chunk {
    std::vector<detail::RawRecord> records;
    std::vector<detail::RecordResult> results;
  };
  auto write = [&](Chunk& chunk) {
    for (auto& r : chunk.results) {
      if (r.error) std::rethrow_exception(r.error);
      ++summary.records;
      DataReport::Outcome outcome = DataReport::Outcome::kKept;
      switch (r.status) {
        case RecordStatus::kEmpty:
          ++summary.empty;
          outcome = DataReport::Outcome::kEmpty;
          break;
        case RecordStatus::kDropped:
          ++summary.dropped;
          outcome = DataReport::Outcome::kDropped;
          break;
        case RecordStatus::kTruncated:
          ++summary.truncated;
          outcome = DataReport::Outcome::kTruncated;
          break;
        case RecordStatus::kOk:
          break;
      }
      uint64_t hash = 0;
      for (const auto& p : r.pieces) hash = DataReport::sampleHash(hash, p.ids, p.mask);
      report.addRecord(r.source, outcome, hash);
      if (r.pieces.size() > 1) ++summary.split_documents;
      for (const auto& p : r.pieces) {
        if (r.validation) {
          val->add(p);
        } else {
          for (int64_t c = 0; c < r.copies; ++c) train.add(p);
        }
        report.addSample(r.source, r.validation, p.ids, p.mask, r.validation ? 1 : r.copies);
      }
    }
    chunk.results.clear();
  };

  auto current = std::make_unique<Chunk>();
  std::unique_ptr<Chunk> previous;
  reader.fill(current->records, o.chunk_bytes, o.chunk_records);
  // Declared after the chunks: destroyed (joined) first, since its job reads them.
  WorkerPool pool(summary.threads);
  while (!current->records.empty()) {
    Chunk* chunk = current.get();
    chunk->results.resize(chunk->records.size());
    pool.start(chunk->records.size(), [chunk, &maker, &bytes_done, &tokens_done](size_t i) {
      chunk->results[i] = maker.make(chunk->records[i]);
      int64_t tokens = 0;
      for (const auto& p : chunk->results[i].pieces) tokens += static_cast<int64_t>(p.ids.size());
      tokens_done += tokens;
      bytes_done += chunk->records[i].bytes;
    });
    if (previous) write(*previous);
    auto next = std::make_unique<Chunk>();
    reader.fill(next->records, o.chunk_bytes, o.chunk_records);
    while (!pool.waitFor(std::chrono::milliseconds(200))) {
      progress.update(bytes_done.load(), tokens_done.load());
    }
    progress.update(bytes_done.load(), tokens_done.load());
    chunk->records.clear();
    chunk->records.shrink_to_fit();
    previous = std::move(current);
    current = std::move(next);
  }
  if (previous) write(*previous);
  progress.update(summary.input_bytes, tokens_done.load(), true);
  for (size_t s = 0; s < o.inputs.size(); ++s) {
    report.addNotInMix(s, reader.skipped()[s]);
    summary.not_in_mix += reader.skipped()[s];
  }

  LOOM_INPUT_CHECK(train.summary.samples > 0,
                   "no samples for " << o.output.string() << ": of " << summary.records
                                     << " records, " << summary.empty << " were empty and "
                                     << summary.dropped << " longer than --seq-len " << o.seq_len
                                     << (val ? " (the rest went to the validation split)" : ""));
  if (val && val->summary.samples == 0) {
    LOOM_WARN("the validation split " << o.val_output.string()
                                      << " has no samples; raise --val-fraction");
  }
  const ordered_json report_json =
      report.toJson(settings, o.output.string(), val ? o.val_output.string() : std::string());
  summary.duplicates = report_json.at("records").at("duplicates").get<int64_t>();
  summary.report_json = report_json.dump();
  train.writer->setStringAttribute(kPrepareReportAttribute, summary.report_json);
  if (val) val->writer->setStringAttribute(kPrepareReportAttribute, summary.report_json);
  train.finish();
  summary.train = train.summary;
  if (val) {
    val->finish();
    summary.val = val->summary;
  }
  if (!o.report.empty()) writeFileAtomic(o.report, report_json.dump(2) + "\n");
  summary.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return summary;
}

std::string formatPrepareSummary(const PrepareSummary& s) {
  std::ostringstream out;
  auto split = [&](const char* name, const PrepareSplitSummary& p) {
    char mean[32];
    std::snprintf(mean, sizeof(mean), "%.1f", p.mean_length);
    out << name << p.path.string() << "\n"
        << "  samples " << p.samples << ", tokens " << p.tokens << ", loss tokens " << p.loss_tokens
        << "\n"
        << "  length min " << p.min_length << " / mean " << mean << " / max " << p.max_length
        << "\n";
  };
  const double secs = std::max(s.seconds, 1e-9);
  const int64_t tokens = s.train.tokens + (s.val ? s.val->tokens : 0);
  char rate[96];
  std::snprintf(rate, sizeof(rate), "%.2f s, %.1f MB/s, %s tokens/s", s.seconds,
                s.input_bytes / secs / 1e6, formatCount(tokens / secs).c_str());
  split("train ", s.train);
  if (s.val) split("val   ", *s.val);
  if (s.split_documents > 0) out << "documents split into pieces " << s.split_documents << "\n";
  char load[48];
  std::snprintf(load, sizeof(load), " (tokenizer loaded in %.2f s)", s.tokenizer_seconds);
  out << "input " << s.input_bytes << " bytes, " << s.threads << " thread(s), " << rate << load
      << "\n";
  if (!s.report_json.empty()) {
    out << DataReport::formatTable(nlohmann::ordered_json::parse(s.report_json));
  }
  return out.str();
}

}  // namespace loom
