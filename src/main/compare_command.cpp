// `trainer compare`: the same prompts answered by the model before fine-tuning (model.path)
// and after (the run's adapter, or its full model), scored against the reference answers with
// ROUGE-1/2/L and BLEU-4, with both models' eval loss on data.eval when the run has one.
// Writes <out>/report.json and a self-contained <out>/report.html (train/compare_report) and
// prints the averages and the first answers side by side.
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "device_flags.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/log.hpp"
#include "loom/core/strings.hpp"
#include "loom/core/text_encoding.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/prompts.hpp"
#include "loom/data/tokenizer.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
#include "loom/model/safetensors.hpp"
#include "loom/train/answer.hpp"
#include "loom/train/compare_report.hpp"
#include "loom/train/evaluate.hpp"
#include "loom/train/model_setup.hpp"

namespace loom::cli {

namespace {

namespace fs = std::filesystem;

struct CompareCli {
  std::string config;
  std::vector<std::string> overrides;
  std::string model;
  std::string adapter;
  std::string after_model;
  std::string prompts;
  std::string out;
  std::string chat_template = "auto";
  std::string thinking = "on";
  std::string device = "auto";
  std::string dtype;
  int64_t max_new_tokens = 128;
  int64_t batch_size = 8;
  int64_t eval_batch_size = 4;
  bool no_eval = false;
};

/// What is compared, resolved from the flags and the run config.
struct Sides {
  fs::path base;                    // the model before
  std::optional<fs::path> adapter;  // after = base + adapter
  std::optional<fs::path> after;    // or after = this full model
  bool nf4 = false;                 // QLoRA: the base as training saw it, in NF4
  std::optional<Config> config;
};

Sides resolveSides(const CompareCli& o) {
  LOOM_INPUT_CHECK(o.model.empty() != o.config.empty(),
                   "give the run with --config FILE, or the model with --model DIR (one of them)");
  Sides s;
  if (!o.config.empty()) {
    s.config = loadConfig(o.config, o.overrides);
    const Config& c = *s.config;
    checkModelFolder(c);
    s.base = c.model.path;
    s.nf4 = c.finetune.method == FinetuneMethod::kQLora;
    if (c.finetune.method == FinetuneMethod::kFull && o.adapter.empty()) {
      s.after =
          o.after_model.empty() ? fs::path(c.run.output_dir) / "model" : fs::path(o.after_model);
    } else if (o.after_model.empty()) {
      s.adapter = o.adapter.empty() ? fs::path(c.run.output_dir) / "adapter" : fs::path(o.adapter);
    }
  } else {
    s.base = o.model;
  }
  if (!o.after_model.empty()) s.after = fs::path(o.after_model);
  if (!o.adapter.empty()) s.adapter = fs::path(o.adapter);
  LOOM_INPUT_CHECK(!(s.adapter && s.after),
                   "--adapter and --after-model both name the model after; give one");
  LOOM_INPUT_CHECK(s.adapter || s.after,
                   "nothing to compare with: give --adapter DIR or --after-model DIR");
  LOOM_INPUT_CHECK(
      fs::is_regular_file(s.base / "config.json"),
      "--model " << s.base.string() << ": no config.json; expected a Hugging Face model folder");
  if (s.adapter) {
    LOOM_INPUT_CHECK(
        fs::is_regular_file(*s.adapter / "adapter_config.json"),
        (o.adapter.empty() ? "the run's adapter " : "--adapter ")
            << s.adapter->string() << ": no adapter_config.json; expected a PEFT adapter folder"
            << (o.adapter.empty() ? " (has the run finished? pass --adapter DIR)" : ""));
  }
  if (s.after) {
    LOOM_INPUT_CHECK(fs::is_regular_file(*s.after / "config.json"),
                     (o.after_model.empty() ? "the run's model " : "--after-model ")
                         << s.after->string()
                         << ": no config.json; expected a Hugging Face model "
                            "folder"
                         << (o.after_model.empty() ? " (has the run finished?)" : ""));
  }
  return s;
}

std::shared_ptr<CausalLm> loadSide(const fs::path& dir, c10::Device device, at::ScalarType dtype,
                                   bool nf4) {
  const HfConfig hf = loadHfConfig(dir);
  DecoderOptions options;
  options.dtype = dtype;
  options.device = device;
  options.nf4_base = nf4 || hf.quantization == "bnb-nf4";
  return loadModel(dir, options);
}

/// Before any answer is generated: the adapter's LoRA tensors fit `model` (lora_A [r, in] and
/// lora_B [out, r] of its projections), read from the file's header alone, so that an adapter
/// made for another model is refused at once rather than after the "before" pass.
/// loadAdapter checks everything else (and this again) when it applies the adapter.
void checkAdapterFits(CausalLm& model, const fs::path& adapter, const fs::path& model_dir) {
  const fs::path file = adapter / "adapter_model.safetensors";
  if (!fs::is_regular_file(file)) return;  // loadAdapter names what is missing
  const SafetensorsFile st(file);
  std::map<std::string, const Projection*> by_path;
  for (auto& [path, proj] : model.projections()) by_path[path] = proj;
  const std::string prefix = "base_model.model.";  // PEFT's names for a causal LM
  for (const auto& name : st.names()) {
    for (const std::string kind : {".lora_A.weight", ".lora_B.weight"}) {
      if (name.size() <= kind.size() + prefix.size() || !startsWith(name, prefix) ||
          !endsWith(name, kind)) {
        continue;
      }
      const auto it =
          by_path.find(name.substr(prefix.size(), name.size() - prefix.size() - kind.size()));
      if (it == by_path.end()) continue;  // loadAdapter names tensors the model lacks
      const bool is_a = kind == ".lora_A.weight";
      const auto& shape = st.entry(name).shape;
      const int64_t want = is_a ? it->second->inFeatures() : it->second->outFeatures();
      const bool fits = shape.size() == 2 && (is_a ? shape[1] : shape[0]) == want;
      LOOM_INPUT_CHECK(fits, "adapter file " << file.string() << ", tensor '" << name << "': shape "
                                             << at::IntArrayRef(shape) << " where the model "
                                             << model_dir.string() << " needs "
                                             << (is_a ? "[r, " : "[") << want
                                             << (is_a ? "]" : ", r]")
                                             << ": the adapter was made for another model");
    }
  }
}

/// One line of an answer for the terminal: newlines shown as a return sign, cut to `width`
/// characters (never inside one).
std::string oneLine(const std::string& text, size_t width) {
  std::string out;
  size_t chars = 0;
  for (char ch : text) {
    const bool starts_character = (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
    if (starts_character && chars++ == width) return out + "...";
    out += ch == '\n' ? std::string(" \u23CE ") : std::string(1, ch);
  }
  return out;
}

int runCompare(const CompareCli& o) {
  LOOM_INPUT_CHECK(o.max_new_tokens > 0,
                   "--max-new-tokens: expected a positive number, got " << o.max_new_tokens);
  LOOM_INPUT_CHECK(o.batch_size > 0,
                   "--batch-size: expected a positive number, got " << o.batch_size);
  LOOM_INPUT_CHECK(o.eval_batch_size > 0,
                   "--eval-batch-size: expected a positive number, got " << o.eval_batch_size);
  const Sides sides = resolveSides(o);
  const c10::Device device = parseDeviceFlag(o.device);
  const at::ScalarType dtype =
      parseDtypeFlag(o.dtype, sides.config ? scalarType(sides.config->model.dtype) : at::kFloat);
  const fs::path out_dir = !o.out.empty() ? fs::path(o.out)
                           : sides.config ? fs::path(sides.config->run.output_dir) / "compare"
                                          : fs::path("compare");
  LOOM_INPUT_CHECK(!fs::exists(out_dir) || fs::is_directory(out_dir),
                   "--out " << out_dir.string() << ": exists and is not a folder");

  // The prompts, rendered; the data to evaluate on.
  const Tokenizer tokenizer = Tokenizer::fromDir(sides.base);
  const auto records = readPromptsFile(o.prompts);
  const PromptStyle style =
      promptStyleFor(tokenizer, o.chat_template, o.thinking == "on", "--chat-template");
  std::vector<std::string> texts, where;
  for (const auto& r : records) {
    texts.push_back(renderPrompt(style, r));
    where.push_back(r.where);
  }
  std::unique_ptr<Hdf5Dataset> eval_data;
  const bool evaluate = !o.no_eval && sides.config && sides.config->data.eval;
  if (evaluate) {
    try {
      eval_data = std::make_unique<Hdf5Dataset>(*sides.config->data.eval,
                                                loadHfConfig(sides.base).vocab_size);
    } catch (const InputError& e) {
      throw InputError("data.eval (" + sides.config->where("data.eval") + "): " + e.what());
    }
  }

  AnswerSettings settings;
  settings.sampling.max_new_tokens = o.max_new_tokens;
  settings.batch_size = o.batch_size;
  EvalOptions eval_options;
  eval_options.micro_batch = o.eval_batch_size;
  if (eval_data) {
    const auto& info = eval_data->info();
    eval_options.pad_id =
        static_cast<int32_t>(info.pad_id >= 0 ? info.pad_id : std::max<int64_t>(info.eos_id, 0));
  }
  auto run_side = [&](CausalLm& model, const char* name, std::optional<CompareEval>* eval) {
    const auto start = std::chrono::steady_clock::now();
    if (eval_data) {
      const EvalResult r = evaluateDataset(model, *eval_data, sides.config->data.seq_len,
                                           sides.config->data.packing, eval_options);
      if (r.loss_tokens > 0) *eval = CompareEval{r.loss(), r.perplexity(), r.loss_tokens};
    }
    auto answers = answerPrompts(model, tokenizer, texts, where, settings);
    char line[200];
    std::snprintf(line, sizeof(line), "compare: %s: %zu answers%s in %.1f s", name, answers.size(),
                  *eval ? (", eval loss " + std::to_string((*eval)->loss)).c_str() : "",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    LOOM_INFO(line);
    return answers;
  };

  CompareReport report;
  report.prompts_file = o.prompts;
  report.before = "model " + sides.base.string() + (sides.nf4 ? " (NF4, as QLoRA trains it)" : "");
  report.after = sides.adapter ? report.before + " + adapter " + sides.adapter->string()
                               : "model " + sides.after->string();
  report.title = sides.config ? sides.config->run.name : sides.base.filename().string();
  report.settings = {{"decoding", "greedy"},
                     {"max_new_tokens", o.max_new_tokens},
                     {"chat_template", o.chat_template},
                     {"thinking", o.thinking},
                     {"dtype", dtypeName(dtype)},
                     {"device", device.str()}};
  if (evaluate) report.eval_data = *sides.config->data.eval;

  LOOM_INFO("compare: " << records.size() << " prompts from " << o.prompts
                        << "; before: " << report.before << "; after: " << report.after);
  auto model = loadSide(sides.base, device, dtype, sides.nf4);
  if (sides.adapter) checkAdapterFits(*model, *sides.adapter, sides.base);
  const auto before = run_side(*model, "before", &report.eval_before);
  if (sides.adapter) {
    loadAdapter(*model, *sides.adapter);
  } else {
    model.reset();
    model = loadSide(*sides.after, device, dtype, false);
  }
  const auto after = run_side(*model, "after", &report.eval_after);

  for (size_t i = 0; i < records.size(); ++i) {
    CompareRow row;
    row.where = records[i].where;
    row.question = records[i].messages.back().content;
    row.prompt = texts[i];
    row.has_reference = records[i].reference.has_value();
    row.reference = records[i].reference.value_or("");
    row.before = before[i].text;
    row.after = after[i].text;
    row.before_finish = before[i].finish_reason;
    row.after_finish = after[i].finish_reason;
    if (row.has_reference) {
      row.before_scores = scoreText(row.before, row.reference);
      row.after_scores = scoreText(row.after, row.reference);
    }
    report.rows.push_back(std::move(row));
  }
  if (sides.config) {
    const fs::path svg = fs::path(sides.config->run.output_dir) / "loss.svg";
    if (fs::is_regular_file(svg)) {
      std::ifstream in(svg);
      std::ostringstream text;
      text << in.rdbuf();
      report.loss_curve_svg = text.str();
    }
  }

  fs::create_directories(out_dir);
  writeFileAtomic(out_dir / "report.json", reportJson(report).dump(2) + "\n");
  writeFileAtomic(out_dir / "report.html", reportHtml(report));

  std::cout << reportSummary(report);
  const size_t shown = std::min<size_t>(records.size(), 5);
  for (size_t i = 0; i < shown; ++i) {
    const CompareRow& row = report.rows[i];
    std::cout << "\n[" << i + 1 << "] " << oneLine(row.question, 100) << "\n";
    if (row.has_reference) std::cout << "  reference: " << oneLine(row.reference, 100) << "\n";
    std::cout << "  before:    " << oneLine(row.before, 100) << "\n"
              << "  after:     " << oneLine(row.after, 100) << "\n";
  }
  if (shown < records.size())
    std::cout << "\n(" << records.size() - shown << " more in the report)\n";
  std::cout << "\nreport: " << (out_dir / "report.html").string() << " and "
            << (out_dir / "report.json").string() << std::endl;
  return kExitOk;
}

}  // namespace

Command addCompareCommand(CLI::App& parent) {
  auto o = std::make_shared<CompareCli>();
  Command c;
  CLI::App* app = parent.add_subcommand(
      "compare",
      "answers before and after fine-tuning, scored against references (ROUGE, BLEU), "
      "as report.html and report.json");
  c.app = app;
  app->add_option("--config,-c", o->config,
                  "the run: before = model.path, after = <run.output_dir>/adapter (or /model for "
                  "full fine-tuning); eval loss on data.eval")
      ->check(CLI::ExistingFile);
  app->add_option("--set", o->overrides, "override a config key (with --config; repeatable)")
      ->allow_extra_args(false);
  app->add_option("--model,-m", o->model, "the model before, instead of --config");
  app->add_option("--adapter", o->adapter, "the PEFT adapter after (applied to the model)");
  app->add_option("--after-model", o->after_model, "a full model after, instead of an adapter");
  app->add_option("--prompts", o->prompts,
                  "JSONL of prompts with reference answers: {\"prompt\", \"reference\"}, alpaca "
                  "{\"instruction\", \"input\", \"output\"} or chat {\"messages\"} (the final "
                  "assistant message is the reference)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--out,-o", o->out,
                  "folder for report.html and report.json (default <run.output_dir>/compare, or "
                  "./compare with --model)");
  app->add_option("--max-new-tokens", o->max_new_tokens)->capture_default_str();
  app->add_option("--batch-size", o->batch_size, "prompts generated together")
      ->capture_default_str();
  app->add_option("--eval-batch-size", o->eval_batch_size, "rows of data.seq_len per eval pass")
      ->capture_default_str();
  app->add_flag("--no-eval", o->no_eval, "skip the eval loss on data.eval");
  app->add_option("--chat-template", o->chat_template, "auto, qwen, llama3 or none")
      ->capture_default_str();
  app->add_option("--thinking", o->thinking, "Qwen3: on or off (enable_thinking)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app->add_option("--device", o->device, "auto|cpu|cuda|cuda:N")->capture_default_str();
  app->add_option("--dtype", o->dtype, "bf16|fp16|fp32 (default: model.dtype, or fp32)");
  app->footer(
      "Greedy answers from both models on the same prompts. Scores (percent, as LLaMA-Factory "
      "reports them): ROUGE-1/2/L F1 and BLEU-4 (smoothing method 3) against each reference, on "
      "lower-cased words and single CJK characters.\n"
      "Exit codes: 0 ok, 1 failure, 2 bad input (the message names the flag, key or file).");
  c.run = [o] { return runCompare(*o); };
  return c;
}

}  // namespace loom::cli
