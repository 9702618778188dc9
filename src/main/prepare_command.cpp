// `trainer prepare`: the command line over loom::runPrepare (src/data/prepare.cpp), which
// holds all of the logic.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
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
  std::string chat_template;
  int threads = 0;
  uint64_t seed = 0;
  bool no_progress = false;
};

constexpr const char* kFooter =
    R"(Formats (one record per JSONL line; a file starting with '[' is a JSON array of records):
  alpaca    {"instruction", "input"?, "output", "system"?}: rendered with the model's chat
            template as a user turn (instruction, plus "\n\n" + input when given) and an
            assistant turn (output). Loss on the output and its closing <|im_end|>/<|eot_id|>.
  chat      {"messages": [{"role": "system"|"user"|"assistant", "content"}, ...]}: rendered
            with the chat template; loss on assistant turns (content + closing token).
  text      {"text"} or a line of a .txt file: one document, tokens + EOS, loss on all;
            documents longer than --seq-len become consecutive pieces (overlapping by one
            token, so each token is a target once).
  template  --prompt-template / --completion-template with {Field} placeholders over the
            record's fields ({{ and }} are literal braces; \n, \t, \\ are escapes), e.g.
            --prompt-template "Question: {Question}\n### Answer:\n" --completion-template "{Response}"
            Prompt and completion are tokenized separately; loss on completion + EOS.
The chat template family (qwen: ChatML, llama3: header format) is detected from the tokenizer
(<|im_start|> or <|start_header_id|>) unless --chat-template names it. For chat/alpaca the
closing turn token ends the sample (no EOS added); text/template append the tokenizer's
eos_token. Empty records are skipped and counted. Output files appear only on success.
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
  app->add_option("--input,-i", o->inputs, "input files: .jsonl, .json (array), .txt (text)")
      ->required();
  app->add_option("--format,-f", o->format, "alpaca|chat|text|template")->required();
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
                  "qwen|llama3 for chat/alpaca (default: detected from the tokenizer)");
  app->add_option("--threads", o->threads, "tokenizing threads (0 = all cores)")
      ->capture_default_str();
  app->add_option("--seed", o->seed, "seed of the train/validation split")->capture_default_str();
  app->add_flag("--no-progress", o->no_progress, "no progress bar / progress lines on stderr");
  app->footer(kFooter);

  c.run = [o] {
    PrepareOptions p;
    p.tokenizer_dir = o->tokenizer;
    for (const auto& in : o->inputs) p.inputs.emplace_back(in);
    p.format = parsePrepareFormat(o->format, "--format");
    p.output = o->output;
    p.seq_len = o->seq_len;
    p.on_overflow = parseOverflowPolicy(o->on_overflow, "--on-overflow");
    p.val_fraction = o->val_fraction;
    p.val_output = o->val_output;
    p.prompt_template = unescapeTemplate(o->prompt_template);
    p.completion_template = unescapeTemplate(o->completion_template);
    if (!o->chat_template.empty()) {
      p.chat_template = parseChatTemplate(o->chat_template, "--chat-template");
    }
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
