// `trainer prepare`: the command line over loom::runPrepare (src/data/prepare.cpp), which
// holds all of the logic.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "loom/core/error.hpp"
#include "loom/data/mix_plan.hpp"
#include "loom/data/prepare.hpp"

namespace loom::cli {

namespace {

struct PrepareCli {
  std::string tokenizer;
  std::vector<std::string> inputs;
  std::string format;
  std::string output;
  int64_t seq_len = 2048;
  std::string on_overflow = "truncate";
  double val_fraction = 0.0;
  std::string val_output;
  std::string prompt_template;
  std::string completion_template;
  std::string chat_template = "auto";
  std::string train_on = "all-assistant";
  std::string system;
  std::string thinking = "auto";
  std::string fields;
  int64_t mix_records = 0;
  std::string report;
  int threads = 0;
  uint64_t seed = 0;
  bool no_progress = false;
};

constexpr const char* kFooter =
    R"(Formats (one record per JSONL line; a file starting with '[' is a JSON array of records):
  alpaca    {"instruction", "input"?, "output", "system"?}: a user turn (instruction, plus
            "\n\n" + input when given) and an assistant turn (output).
  chat      {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content", ...}]}
            (OpenAI form; tool_calls and reasoning_content are passed to the template).
  sharegpt  {"conversations": [{"from": "human"|"gpt"|"system"|"tool", "value"}], "system"?}:
            the same conversation as chat.
  text      {"text"} or a line of a .txt file: one document, [BOS +] tokens + EOS, loss on all;
            documents longer than --seq-len become pieces overlapping by one token.
  template  --prompt-template / --completion-template with {Field} placeholders over the
            record's fields ({{ and }} are literal braces; \n, \t, \\ are escapes), e.g.
            --prompt-template "Question: {Question}\n### Answer:\n" --completion-template "{Response}"
            Prompt and completion are tokenized separately; loss on completion + EOS.
alpaca, chat and sharegpt are rendered with the model's own chat template (tokenizer_config.json
or chat_template.jinja; built-in Qwen / Llama 3 ones when the folder has none), exactly as
transformers' apply_chat_template, with loss on the assistant's output and the token closing
its turn. --fields renames fields, e.g. for {"Question", "Complex_CoT", "Response"}:
  --fields instruction=Question,reasoning=Complex_CoT,output=Response
(the reasoning goes in Qwen3's think block). text/template add the tokenizer's BOS when its
post-processor does (Llama 3) and its eos_token.
Mixing: --input a.jsonl:0.7 --input b.jsonl:0.3 takes the inputs in those proportions (seeded;
records repeat only when --mix-records asks for more than a source has); --val-fraction then
holds out that share of every source.
The data report (records, empty, dropped, truncated, duplicates, token lengths, loss share, per
source) is printed at the end, stored in the files, and written by --report FILE.json.
Empty records are skipped and counted. Output files appear only on success.
Exit codes: 0 ok, 1 failure, 2 bad input (the message names the file:line and field).)";

}  // namespace

Command addPrepareCommand(CLI::App& parent) {
  auto o = std::make_shared<PrepareCli>();
  Command c;
  CLI::App* app = parent.add_subcommand(
      "prepare", "tokenize JSONL / JSON / text into a pre-tokenized HDF5 training file");
  c.app = app;
  app->add_option("--tokenizer", o->tokenizer,
                  "folder with tokenizer.json (and tokenizer_config.json for eos/pad); a model "
                  "folder works")
      ->required();
  app->add_option("--input,-i", o->inputs,
                  "input files: .jsonl, .json (array), .txt (text); FILE:WEIGHT to mix")
      ->required();
  app->add_option("--format,-f", o->format, "alpaca|chat|sharegpt|text|template")->required();
  app->add_option("--output,-o", o->output, "output HDF5 file (the train split)")->required();
  app->add_option("--seq-len", o->seq_len, "longest sample in tokens")->capture_default_str();
  app->add_option("--on-overflow", o->on_overflow,
                  "truncate|drop: what to do with a sample longer than --seq-len (text: split)")
      ->capture_default_str();
  app->add_option("--val-fraction", o->val_fraction,
                  "fraction of records sent to --val-output (seeded, deterministic)");
  app->add_option("--val-output", o->val_output, "validation split HDF5 file");
  app->add_option("--prompt-template", o->prompt_template,
                  "--format template: the prompt (no loss), with {Field} placeholders");
  app->add_option("--completion-template", o->completion_template,
                  "--format template: the completion (loss), with {Field} placeholders");
  app->add_option("--chat-template", o->chat_template,
                  "auto (the tokenizer's own) | qwen | llama3 (built-in) | FILE.jinja")
      ->capture_default_str();
  app->add_option("--train-on", o->train_on,
                  "all-assistant | last-assistant | all (train on inputs too)")
      ->capture_default_str();
  app->add_option("--system", o->system, "system prompt for conversations that have none");
  app->add_option("--thinking", o->thinking,
                  "auto | on | off: Qwen3's enable_thinking (auto: on for records with a "
                  "reasoning trace)")
      ->capture_default_str();
  app->add_option("--fields", o->fields,
                  "rename fields: KEY=NAME,... (instruction, input, output, system, reasoning, "
                  "messages, conversations, text)");
  app->add_option("--mix-records", o->mix_records,
                  "records of the weighted mix (default: the largest without repeats)");
  app->add_option("--report", o->report, "also write the data report to this JSON file");
  app->add_option("--threads", o->threads, "tokenizing threads (0 = all cores)")
      ->capture_default_str();
  app->add_option("--seed", o->seed, "seed of the train/validation split")->capture_default_str();
  app->add_flag("--no-progress", o->no_progress, "no progress bar / progress lines on stderr");
  app->footer(kFooter);

  c.run = [o] {
    PrepareOptions p;
    p.tokenizer_dir = o->tokenizer;
    for (const auto& in : o->inputs) {
      const InputSpec spec = parseInputSpec(in, "--input");
      p.inputs.push_back(spec.path);
      if (spec.weight) p.weights.push_back(*spec.weight);
    }
    LOOM_INPUT_CHECK(p.weights.empty() || p.weights.size() == p.inputs.size(),
                     "--input: give a weight to every input or to none (FILE:WEIGHT)");
    p.format = parsePrepareFormat(o->format, "--format");
    p.output = o->output;
    p.seq_len = o->seq_len;
    p.on_overflow = parseOverflowPolicy(o->on_overflow, "--on-overflow");
    p.val_fraction = o->val_fraction;
    p.val_output = o->val_output;
    p.prompt_template = unescapeTemplate(o->prompt_template);
    p.completion_template = unescapeTemplate(o->completion_template);
    p.chat_template = o->chat_template;
    p.train_on = parseTrainOn(o->train_on, "--train-on");
    p.system_prompt = o->system;
    LOOM_INPUT_CHECK(o->thinking == "auto" || o->thinking == "on" || o->thinking == "off",
                     "--thinking: unknown value '" << o->thinking << "'; expected auto, on or off");
    if (o->thinking != "auto") p.thinking = o->thinking == "on";
    p.fields = parseRecordFields(o->fields, "--fields");
    p.mix_records = o->mix_records;
    p.report = o->report;
    p.threads = o->threads;
    p.seed = o->seed;
    p.progress = !o->no_progress;
    const PrepareSummary summary = runPrepare(p);
    std::cout << formatPrepareSummary(summary) << std::flush;
    return 0;
  };
  return c;
}

}  // namespace loom::cli
