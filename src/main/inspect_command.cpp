// `trainer inspect`: looks into Loom's inputs without training. `--data FILE.h5` shows a
// prepared token file (loom::inspectDataset, src/data/dataset_inspect.cpp). Each kind of input
// is an optional option and a section of the output, so others (e.g. `--model DIR`) can be
// added beside it; at least one must be given.
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "loom/core/error.hpp"
#include "loom/data/dataset_inspect.hpp"
#include "model_inspect.hpp"

namespace loom::cli {

namespace {

struct InspectCli {
  std::string model;
  std::string config;
  std::string data;
  std::string report;
  std::string tokenizer;
  std::vector<int64_t> samples;
  int64_t count = 3;
  std::string color = "auto";
};

MaskStyle maskStyle(const std::string& color) {
  if (color == "always") return MaskStyle::kAnsi;
  if (color == "never") return MaskStyle::kBrackets;
  LOOM_INPUT_CHECK(color == "auto",
                   "--color: unknown value '" << color << "'; expected auto, always or never");
  return ::isatty(STDOUT_FILENO) == 1 ? MaskStyle::kAnsi : MaskStyle::kBrackets;
}

}  // namespace

Command addInspectCommand(CLI::App& parent) {
  auto o = std::make_shared<InspectCli>();
  Command c;
  CLI::App* app = parent.add_subcommand(
      "inspect",
      "show a model (--model: architecture, parameters, memory) or a prepared data file (--data)");
  c.app = app;
  app->add_option("--model", o->model,
                  "Hugging Face model folder: architecture, parameters, memory");
  app->add_option("--config", o->config, "run config whose finetune method --model is costed for");
  app->add_option("--data", o->data,
                  "a token file from `trainer prepare`: summary and decoded samples");
  app->add_option("--tokenizer", o->tokenizer,
                  "tokenizer folder to decode --data samples with (else token ids are shown)");
  app->add_option("--report", o->report,
                  "with --data: write the file's data report (from trainer prepare) as JSON");
  app->add_option("--sample", o->samples, "sample indices to show (repeatable)");
  app->add_option("--count", o->count, "how many samples to show when --sample is not given")
      ->capture_default_str();
  app->add_option("--color", o->color,
                  "auto|always|never: dim the context (non-loss) text instead of bracketing it")
      ->capture_default_str();

  c.run = [o] {
    LOOM_INPUT_CHECK(
        !o->model.empty() || !o->data.empty(),
        "one of --model DIR or --data FILE.h5 is required (see trainer inspect --help)");
    if (!o->model.empty()) {
      const int rc = inspectModel(o->model, o->config);
      if (o->data.empty() || rc != 0) return rc;
    }
    LOOM_INPUT_CHECK(o->count >= 0, "--count must be >= 0, got " << o->count);
    LOOM_INPUT_CHECK(o->report.empty() || !o->data.empty(),
                     "--report writes the data report of --data FILE.h5; give --data");
    InspectDataOptions d;
    d.data = o->data;
    d.tokenizer_dir = o->tokenizer;
    d.samples = o->samples;
    d.count = o->count;
    d.style = maskStyle(o->color);
    d.report = o->report;
    inspectDataset(d, std::cout);
    std::cout << std::flush;
    return 0;
  };
  return c;
}

}  // namespace loom::cli
