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
#include "loom/core/text_encoding.hpp"
#include "loom/data/chat_template.hpp"
#include "loom/data/prepare.hpp"
#include "loom/data/tokenizer.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/generate.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
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
  std::string system;
  std::string device = "auto";
  std::string dtype = "fp32";
  int64_t batch_size = 8;
  std::vector<std::string> stop;
  SamplingSettings sampling;
};

/// One prompt: the conversation to render (with --chat-template none, one user message taken
/// as it is).
struct Prompt {
  std::vector<ChatMessage> messages;
  std::string where;  // "--prompt 2", "prompts.jsonl:7"
};

std::string stringField(const nlohmann::json& record, const char* key, const std::string& where,
                        bool required) {
  if (!record.contains(key) || record.at(key).is_null()) {
    LOOM_INPUT_CHECK(!required, where << ": missing field '" << key << "'");
    return "";
  }
  LOOM_INPUT_CHECK(record.at(key).is_string(),
                   where << ": field '" << key << "' should be a string");
  return record.at(key).get<std::string>();
}

/// prompts.jsonl: {"prompt"}, alpaca {"instruction", "input"?, "system"?}, or chat
/// {"messages"} (a last assistant message, the reference answer, is left out).
std::vector<Prompt> readPromptsFile(const fs::path& file) {
  const std::string text = readUtf8TextFile(file, "prompts file");
  std::vector<Prompt> out;
  size_t line_no = 0, begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Prompt p;
    p.where = file.string() + ":" + std::to_string(line_no);
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      LOOM_INPUT_CHECK(false, p.where << ": malformed JSON (" << printableText(e.what()) << ")");
    }
    LOOM_INPUT_CHECK(record.is_object(), p.where << ": expected a JSON object");
    if (record.contains("messages")) {
      p.messages = parseChatMessages(record.at("messages"), p.where);
      if (p.messages.size() > 1 && p.messages.back().role == "assistant") p.messages.pop_back();
    } else if (record.contains("instruction")) {
      const std::string system = stringField(record, "system", p.where, false);
      const std::string instruction = stringField(record, "instruction", p.where, true);
      const std::string input = stringField(record, "input", p.where, false);
      p.messages = alpacaMessages(system, instruction, input);
    } else {
      p.messages.push_back({"user", stringField(record, "prompt", p.where, true), std::nullopt});
    }
    LOOM_INPUT_CHECK(!p.messages.empty() && p.messages.back().role != "assistant",
                     p.where << ": nothing to answer (the conversation ends with the assistant)");
    out.push_back(std::move(p));
  }
  LOOM_INPUT_CHECK(!out.empty(), file.string() << ": no prompts (the file is empty)");
  return out;
}

/// The text of a generation so far without a trailing partial character (U+FFFD from an
/// incomplete UTF-8 sequence is held back until the next token completes it).
std::string settledText(const std::string& text) {
  const std::string replacement = "\xEF\xBF\xBD";
  if (text.size() >= 3 && text.compare(text.size() - 3, 3, replacement) == 0) {
    return text.substr(0, text.size() - 3);
  }
  return text;
}

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
  std::vector<Prompt> prompts;
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    Prompt p;
    p.where = "--prompt " + std::to_string(i + 1);
    if (!o.system.empty()) p.messages.push_back({"system", o.system, std::nullopt});
    p.messages.push_back({"user", o.prompts[i], std::nullopt});
    prompts.push_back(std::move(p));
  }
  if (!o.prompts_file.empty()) {
    for (auto& p : readPromptsFile(o.prompts_file)) prompts.push_back(std::move(p));
  }
  std::optional<ChatTemplate> family;
  if (o.chat_template == "auto") {
    family = detectChatTemplate(tokenizer);
    LOOM_INPUT_CHECK(family, "--chat-template auto: " << tokenizer.path().string()
                                                      << " has no chat tokens of a known family; "
                                                         "pass --chat-template qwen|llama3|none");
  } else if (o.chat_template != "none") {
    family = parseChatTemplate(o.chat_template, "--chat-template");
  }
  std::vector<std::string> texts;
  std::vector<std::vector<int64_t>> ids;
  for (const auto& p : prompts) {
    std::string text;
    if (family) {
      text = renderChat(*family, p.messages, /*add_generation_prompt=*/true).text();
    } else {
      LOOM_INPUT_CHECK(p.messages.size() == 1 && p.messages[0].role == "user",
                       p.where << ": --chat-template none takes plain prompts, not conversations");
      text = p.messages[0].content;
    }
    const auto encoded = tokenizer.encode(text);
    LOOM_INPUT_CHECK(!encoded.empty(), p.where << ": the prompt is empty");
    texts.push_back(text);
    ids.emplace_back(encoded.begin(), encoded.end());
  }

  // Where a row ends: EOS and the template's end of turn.
  SamplingSettings sampling = o.sampling;
  if (auto eos = tokenizer.eosId()) sampling.stop_ids.push_back(*eos);
  for (const char* end_of_turn : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"}) {
    if (auto id = tokenizer.tokenToId(end_of_turn)) sampling.stop_ids.push_back(*id);
  }
  const int64_t pad = tokenizer.padId().value_or(tokenizer.eosId().value_or(0));

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
  const bool stream = prompts.size() == 1 && o.output.empty();
  for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(o.batch_size)) {
    const size_t last = std::min(prompts.size(), first + static_cast<size_t>(o.batch_size));
    const std::vector<std::vector<int64_t>> batch(ids.begin() + static_cast<long>(first),
                                                  ids.begin() + static_cast<long>(last));
    std::vector<std::vector<int32_t>> so_far(batch.size());
    std::vector<std::string> shown(batch.size());
    std::vector<size_t> cut(batch.size(), std::string::npos);  // where a stop string begins
    auto on_token = [&](size_t row, int64_t token) {
      so_far[row].push_back(static_cast<int32_t>(token));
      const std::string text = tokenizer.decode(so_far[row], /*skip_special=*/true);
      for (const auto& s : o.stop) {
        const size_t at = text.find(s);
        if (at != std::string::npos) {
          cut[row] = at;
          break;
        }
      }
      if (stream) {
        const std::string settled = settledText(text.substr(0, std::min(text.size(), cut[row])));
        if (settled.size() > shown[row].size() &&
            settled.compare(0, shown[row].size(), shown[row]) == 0) {
          std::cout << settled.substr(shown[row].size()) << std::flush;
          shown[row] = settled;
        }
      }
      return cut[row] != std::string::npos;
    };
    GenerationStats stats;
    const auto results = generate(*model, batch, sampling, pad, &stats, on_token);
    if (stream) std::cout << std::endl;
    const double seconds = stats.prefill_s + stats.decode_s;
    LOOM_INFO("generate: prompts "
              << first + 1 << "-" << last << ": prefill " << stats.prompt_tokens << " tokens in "
              << stats.prefill_s << " s ("
              << (stats.prefill_s > 0 ? stats.prompt_tokens / stats.prefill_s : 0)
              << " tokens/s), decode " << stats.new_tokens << " tokens in " << stats.decode_s
              << " s (" << (stats.decode_s > 0 ? stats.new_tokens / stats.decode_s : 0)
              << " tokens/s)");
    for (size_t r = 0; r < results.size(); ++r) {
      const size_t i = first + r;
      std::vector<int32_t> new_ids(results[r].tokens.begin(), results[r].tokens.end());
      std::string text = tokenizer.decode(new_ids, /*skip_special=*/true);
      if (cut[r] != std::string::npos) text = text.substr(0, cut[r]);
      if (output.is_open()) {
        json record;
        record["prompt"] = texts[i];
        record["text"] = text;
        record["token_ids"] = results[r].tokens;
        record["finish_reason"] = results[r].finish_reason;
        record["tokens_per_s"] =
            seconds > 0 ? static_cast<double>(stats.new_tokens) / seconds : 0.0;
        output << record.dump() << "\n";
      } else if (!stream) {
        std::cout << "### " << prompts[i].where << " (" << results[r].finish_reason << ")\n"
                  << text << "\n"
                  << std::endl;
      }
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
