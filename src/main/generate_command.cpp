// `trainer generate`: answers to prompts from a model folder (16-bit, fp32 or bitsandbytes
// NF4) with an optional PEFT adapter, or from a run config (model.path with finetune.adapter,
// else the run's final adapter). Prompts are rendered with the model family's chat template
// (the generation prompt appended), batched with a KV cache (model/generate), and end at EOS,
// the template's end-of-turn token, a --stop string or --max-new-tokens. One prompt streams
// its answer to stdout; --output FILE.jsonl gets one record per prompt.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "device_flags.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/log.hpp"
#include "loom/data/prompts.hpp"
#include "loom/data/tokenizer.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
#include "loom/train/answer.hpp"
#include "loom/train/model_setup.hpp"

namespace loom::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

struct GenerateCli {
  std::string model;
  std::string adapter;
  std::string config;
  std::vector<std::string> overrides;
  std::vector<std::string> prompts;
  std::string prompts_file;
  std::string output;
  std::string chat_template = "auto";
  std::string thinking = "on";
  std::string system;
  std::string device = "auto";
  std::string dtype = "fp32";
  int64_t batch_size = 8;
  std::vector<std::string> stop;
  SamplingSettings sampling;
};

int runGenerate(const GenerateCli& o) {
  o.sampling.validate();
  LOOM_INPUT_CHECK(o.model.empty() != o.config.empty(),
                   "give the model with --model DIR or --config FILE (one of them)");
  LOOM_INPUT_CHECK(o.batch_size > 0,
                   "--batch-size: expected a positive number, got " << o.batch_size);
  LOOM_INPUT_CHECK(!o.prompts.empty() || !o.prompts_file.empty(),
                   "nothing to answer: give --prompt TEXT (repeatable) or --prompts FILE.jsonl");
  for (const auto& s : o.stop) LOOM_INPUT_CHECK(!s.empty(), "--stop: an empty string");
  const c10::Device device = parseDeviceFlag(o.device);
  const at::ScalarType dtype = parseDtypeFlag(o.dtype, at::kFloat);

  // The model folder and adapter.
  fs::path model_dir = o.model;
  std::optional<fs::path> adapter;
  if (!o.adapter.empty()) adapter = fs::path(o.adapter);
  if (!o.config.empty()) {
    const Config config = loadConfig(o.config, o.overrides);
    checkModelFolder(config);
    checkAdapterFolder(config);
    model_dir = config.model.path;
    if (!adapter && config.finetune.adapter) adapter = fs::path(*config.finetune.adapter);
    const fs::path trained = fs::path(config.run.output_dir) / "adapter";
    if (!adapter && config.finetune.method != FinetuneMethod::kFull &&
        fs::exists(trained / "adapter_config.json")) {
      adapter = trained;
    }
  }
  LOOM_INPUT_CHECK(
      fs::is_regular_file(model_dir / "config.json"),
      "--model " << model_dir.string() << ": no config.json; expected a Hugging Face model folder");
  if (adapter) {
    LOOM_INPUT_CHECK(fs::is_regular_file(*adapter / "adapter_config.json"),
                     "--adapter " << adapter->string()
                                  << ": no adapter_config.json; expected a PEFT adapter folder");
  }
  const Tokenizer tokenizer = Tokenizer::fromDir(model_dir);

  // The prompts, rendered.
  std::vector<PromptRecord> prompts;
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    PromptRecord p;
    p.where = "--prompt " + std::to_string(i + 1);
    if (!o.system.empty()) p.messages.push_back({"system", o.system, std::nullopt});
    p.messages.push_back({"user", o.prompts[i], std::nullopt});
    prompts.push_back(std::move(p));
  }
  if (!o.prompts_file.empty()) {
    for (auto& p : readPromptsFile(o.prompts_file)) prompts.push_back(std::move(p));
  }
  const PromptStyle style =
      promptStyleFor(tokenizer, o.chat_template, o.thinking == "on", "--chat-template");
  std::vector<std::string> texts, where;
  for (const auto& p : prompts) {
    texts.push_back(renderPrompt(style, p));
    where.push_back(p.where);
  }

  const auto load_start = std::chrono::steady_clock::now();
  const HfConfig hf = loadHfConfig(model_dir);
  DecoderOptions options;
  options.dtype = dtype;
  options.device = device;
  options.nf4_base = hf.quantization == "bnb-nf4";
  auto model = loadModel(model_dir, options);
  if (adapter) loadAdapter(*model, *adapter);
  LOOM_INFO("generate: "
            << model_dir.string() << (adapter ? " + adapter " + adapter->string() : "") << " ("
            << hf.model_type << ", " << dtypeName(dtype) << ", " << device.str() << "), loaded in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count()
            << " s; " << prompts.size() << " prompt(s)");

  std::ofstream output;
  fs::path output_tmp;
  // The answers appear under --output only when all are written (a temporary beside it, then
  // a rename); a failure leaves no partial file.
  struct RemoveUnlessKept {
    fs::path* path;
    ~RemoveUnlessKept() {
      std::error_code ec;
      if (!path->empty()) fs::remove(*path, ec);
    }
  } cleanup{&output_tmp};
  if (!o.output.empty()) {
    output_tmp = temporarySibling(o.output);
    output.open(output_tmp);
    LOOM_INPUT_CHECK(output, "--output " << o.output << ": cannot be written");
  }
  AnswerSettings settings;
  settings.sampling = o.sampling;
  settings.stops = o.stop;
  settings.batch_size = o.batch_size;
  // One prompt without --output streams its answer as it grows.
  std::string shown;
  AnswerTextCallback stream;
  if (prompts.size() == 1 && o.output.empty()) {
    stream = [&shown](size_t, const std::string& text) {
      if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
        std::cout << text.substr(shown.size()) << std::flush;
        shown = text;
      }
    };
  }
  auto on_batch = [](size_t first, size_t last, const GenerationStats& stats) {
    LOOM_INFO("generate: prompts "
              << first + 1 << "-" << last << ": prefill " << stats.prompt_tokens << " tokens in "
              << stats.prefill_s << " s ("
              << (stats.prefill_s > 0 ? stats.prompt_tokens / stats.prefill_s : 0)
              << " tokens/s), decode " << stats.new_tokens << " tokens in " << stats.decode_s
              << " s (" << (stats.decode_s > 0 ? stats.new_tokens / stats.decode_s : 0)
              << " tokens/s)");
  };
  const auto answers = answerPrompts(*model, tokenizer, texts, where, settings, stream, on_batch);
  if (stream) std::cout << std::endl;
  for (size_t i = 0; i < answers.size(); ++i) {
    const Answer& a = answers[i];
    if (output.is_open()) {
      json record;
      record["prompt"] = texts[i];
      record["text"] = a.text;
      record["token_ids"] = a.token_ids;
      record["finish_reason"] = a.finish_reason;
      record["tokens_per_s"] = a.tokens_per_s;
      output << record.dump() << "\n";
    } else if (!stream) {
      std::cout << "### " << prompts[i].where << " (" << a.finish_reason << ")\n"
                << a.text << "\n"
                << std::endl;
    }
  }
  if (output.is_open()) {
    output.close();
    if (output.fail()) throw Error("--output " + o.output + ": writing failed (disk full?)");
    fs::rename(output_tmp, o.output);
    output_tmp.clear();
    LOOM_INFO("generate: " << prompts.size() << " answer(s) written to " << o.output);
  }
  return kExitOk;
}

}  // namespace

Command addGenerateCommand(CLI::App& parent) {
  auto o = std::make_shared<GenerateCli>();
  Command c;
  CLI::App* app = parent.add_subcommand(
      "generate", "answer prompts with a model (and adapter), greedy or sampled, with a KV cache");
  c.app = app;
  app->add_option("--model,-m", o->model, "Hugging Face model folder");
  app->add_option("--adapter", o->adapter, "PEFT adapter folder applied to the model");
  app->add_option("--config,-c", o->config,
                  "a run config instead of --model: model.path with finetune.adapter, else the "
                  "run's final adapter (<run.output_dir>/adapter) when there is one")
      ->check(CLI::ExistingFile);
  app->add_option("--set", o->overrides, "override a config key (with --config; repeatable)")
      ->allow_extra_args(false);
  app->add_option("--prompt,-p", o->prompts, "a prompt (a user message; repeatable)")
      ->allow_extra_args(false);
  app->add_option("--prompts", o->prompts_file,
                  "JSONL of prompts: {\"prompt\"}, alpaca {\"instruction\", \"input\"} or chat "
                  "{\"messages\"} (a final assistant message is left out)")
      ->check(CLI::ExistingFile);
  app->add_option("--output,-o", o->output,
                  "JSONL out: prompt, text, token_ids, finish_reason, tokens_per_s per prompt");
  app->add_option("--chat-template", o->chat_template,
                  "auto (from the tokenizer), qwen, llama3 or none (the prompt as it is)")
      ->capture_default_str();
  app->add_option("--thinking", o->thinking,
                  "Qwen3: on (the template's default) or off (an empty think block opens the "
                  "answer, as enable_thinking=False)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app->add_option("--system", o->system, "a system message before each --prompt");
  app->add_option("--max-new-tokens", o->sampling.max_new_tokens)->capture_default_str();
  app->add_option("--temperature", o->sampling.temperature, "0 = greedy")->capture_default_str();
  app->add_option("--top-k", o->sampling.top_k, "0 = off")->capture_default_str();
  app->add_option("--top-p", o->sampling.top_p, "1 = off")->capture_default_str();
  app->add_option("--repetition-penalty", o->sampling.repetition_penalty, "1 = off")
      ->capture_default_str();
  app->add_option("--seed", o->sampling.seed, "sampling seed")->capture_default_str();
  app->add_option("--stop", o->stop, "end an answer at this text (repeatable)")
      ->allow_extra_args(false);
  app->add_option("--batch-size", o->batch_size, "prompts generated together")
      ->capture_default_str();
  app->add_option("--device", o->device, "auto|cpu|cuda|cuda:N")->capture_default_str();
  app->add_option("--dtype", o->dtype, "bf16|fp16|fp32")->capture_default_str();
  app->footer(
      "Answers end at the tokenizer's EOS or the template's end of turn, a --stop text, or\n"
      "--max-new-tokens. Prefill and decode speed go to stderr.\n"
      "Exit codes: 0 ok, 1 failure, 2 bad input (the message names the flag or file).");
  c.run = [o] { return runGenerate(*o); };
  return c;
}

}  // namespace loom::cli
