// `trainer export`: writes what a run produced in the form the Hugging Face ecosystem loads.
//
//   finetune.method lora   the adapter is finetune.adapter when set, else the run's final
//   (or qlora)             adapter, <run.output_dir>/adapter (a QLoRA one merges into the
//                          16-bit weights of model.path).
//                          without --merge: that adapter, validated against model.path and
//                            re-written in PEFT layout (weights in fp32, as PEFT keeps them);
//                          with --merge: LoRA folded into model.path's weights, saved as a
//                            full Hugging Face folder (AutoModelForCausalLM.from_pretrained).
//   finetune.method full   the run's final model, <run.output_dir>/model, when it holds a
//                          config.json, else model.path, saved as a full Hugging Face folder.
//
// Full folders are written in --dtype (default: the source checkpoint's dtype), sharded above
// --max-shard-size. The output goes to "<DIR>.tmp-<pid>" and is renamed onto DIR at the end,
// so DIR never holds a half-written export; a non-empty DIR is replaced only with --force.
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "device_flags.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/log.hpp"
#include "loom/core/staged_folder.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
#include "loom/train/model_setup.hpp"

namespace loom::cli {

namespace {

namespace fs = std::filesystem;

struct ExportCli {
  std::string config;
  std::vector<std::string> overrides;
  std::string out;
  bool merge = false;
  bool force = false;
  std::string dtype;
  std::string max_shard_size;  // empty: kDefaultMaxShardBytes
};

/// --max-shard-size: bytes, or a number with KB/MB/GB (powers of 1000, as Hugging Face's
/// max_shard_size) or KiB/MiB/GiB. A tensor larger than the size gets a shard of its own.
uint64_t parseShardSize(const std::string& text) {
  if (text.empty()) return kDefaultMaxShardBytes;
  const std::string expected =
      "expected a positive size, e.g. 5GB, 500MB, 2GiB or a number of bytes";
  size_t used = 0;
  double number = 0;
  try {
    number = std::stod(text, &used);
  } catch (const std::exception&) {
    LOOM_INPUT_CHECK(false, "--max-shard-size " << text << ": " << expected);
  }
  std::string unit = text.substr(used);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const std::pair<const char*, double> units[] = {
      {"", 1},      {"B", 1},        {"KB", 1e3},        {"MB", 1e6},          {"GB", 1e9},
      {"TB", 1e12}, {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}};
  for (const auto& [name, scale] : units) {
    if (unit != name) continue;
    const double bytes = number * scale;
    LOOM_INPUT_CHECK(std::isfinite(bytes) && bytes >= 1 && bytes < 1.8e19,
                     "--max-shard-size " << text << ": " << expected);
    return static_cast<uint64_t>(bytes);
  }
  LOOM_INPUT_CHECK(false, "--max-shard-size " << text << ": unknown unit '" << text.substr(used)
                                              << "'; " << expected);
  return 0;
}

/// `path` made absolute, normalised, without a trailing separator.
fs::path normalised(const fs::path& path) {
  fs::path p = fs::absolute(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p;
}

/// True when `inner` is `outer` or lies inside it (resolving links where they exist).
bool within(const fs::path& inner, const fs::path& outer) {
  const fs::path a = fs::weakly_canonical(normalised(inner));
  const fs::path b = fs::weakly_canonical(normalised(outer));
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

/// The folder of the adapter to export (see the top of this file).
fs::path adapterSource(const Config& config) {
  if (config.finetune.adapter) return *config.finetune.adapter;
  const fs::path run_adapter = fs::path(config.run.output_dir) / "adapter";
  LOOM_INPUT_CHECK(fs::is_regular_file(run_adapter / "adapter_config.json"),
                   "finetune.adapter is not set in "
                       << config.source_file << " and run.output_dir ("
                       << config.where("run.output_dir") << ") holds no final adapter: '"
                       << run_adapter.string()
                       << "' has no adapter_config.json. Set finetune.adapter to the adapter "
                          "to export (or --set finetune.adapter=DIR)");
  return run_adapter;
}

/// The folder of the full model to export (see the top of this file).
fs::path fullModelSource(const Config& config) {
  const fs::path run_model = fs::path(config.run.output_dir) / "model";
  if (fs::is_regular_file(run_model / "config.json")) return run_model;
  return config.model.path;
}

int runExport(const ExportCli& o) {
  const uint64_t max_shard_bytes = parseShardSize(o.max_shard_size);
  Config config = loadConfig(o.config, o.overrides);
  LOOM_INPUT_CHECK(!o.out.empty(), "--out DIR is required");
  const fs::path out = normalised(o.out);
  if (fs::exists(out)) {
    LOOM_INPUT_CHECK(fs::is_directory(out), "--out " << o.out << ": exists and is not a folder");
    LOOM_INPUT_CHECK(o.force || fs::is_empty(out),
                     "--out " << o.out << ": the folder is not empty; pass --force to replace it");
  }
  const bool lora = config.finetune.method != FinetuneMethod::kFull;
  LOOM_INPUT_CHECK(lora || !o.merge, "--merge: finetune.method ("
                                         << config.where("finetune.method")
                                         << ") is full; there is no LoRA to merge");
  LOOM_INPUT_CHECK(o.dtype.empty() || !lora || o.merge,
                   "--dtype applies to full model folders (--merge, or finetune.method full); "
                   "an adapter is written in fp32, as PEFT keeps it");

  fs::path source;  // what is read: the adapter (LoRA) or the model folder (full)
  if (lora) {
    source = adapterSource(config);
    config.finetune.adapter = source.string();
  } else {
    source = fullModelSource(config);
    config.model.path = source.string();
  }
  // Replacing --out must not delete what is read.
  for (const fs::path& input : {source, fs::path(config.model.path)}) {
    LOOM_INPUT_CHECK(!within(input, out), "--out " << o.out << " overlaps the input folder "
                                                   << input.string()
                                                   << "; choose another output folder");
  }
  checkModelFolder(config);
  checkAdapterFolder(config);
  const HfConfig hf = loadHfConfig(config.model.path);
  const at::ScalarType source_dtype =
      parseDtypeName(hf.torch_dtype, config.model.path + "/config.json");
  const at::ScalarType out_dtype = parseDtypeFlag(o.dtype, source_dtype);

  // QLoRA adapters are merged (and written) as LoRA over model.path's own weights: the 16-bit
  // original, or a 4-bit folder's dequantized values. That is what QLoRA users ship.
  if (config.finetune.method == FinetuneMethod::kQLora) {
    config.finetune.method = FinetuneMethod::kLora;
    if (o.merge && hf.quantization.empty()) {
      LOOM_INFO("export: a QLoRA adapter, merged into the 16-bit weights of " << config.model.path);
    } else if (o.merge) {
      LOOM_WARN("export: " << config.model.path
                           << " is a 4-bit checkpoint; the adapter is merged into its dequantized "
                              "weights (merge into the 16-bit original for the best model)");
    }
  }
  // Loading in the checkpoint's own dtype keeps its weights exact; a merge is computed in
  // fp32 (Projection::mergeLora) and rounded once, to out_dtype, when saved.
  ModelSetup setup = setupModel(config, c10::Device(c10::kCPU), source_dtype);
  // Staged as "<out>.tmp-<pid>", the name --help documents.
  fs::path staging = out;
  staging += ".tmp-" + std::to_string(::getpid());
  StagedFolder staged(out, o.force, staging);
  std::string what;
  if (lora && !o.merge) {
    saveAdapter(*setup.model, setup.spec, staged.path(), normalised(config.model.path).string());
    what = "adapter " + source.string();
  } else if (lora) {
    saveMergedModel(*setup.model, staged.path(), config.model.path, out_dtype, max_shard_bytes);
    what = "model " + config.model.path + " merged with adapter " + source.string() + " (" +
           dtypeName(out_dtype) + ")";
  } else {
    saveFullModel(*setup.model, staged.path(), config.model.path, out_dtype, max_shard_bytes);
    what = "model " + config.model.path + " (" + dtypeName(out_dtype) + ")";
  }
  staged.commit();
  LOOM_INFO("export: wrote " << what << " to " << out.string());
  std::cout << "exported " << what << " to " << out.string() << std::endl;
  return kExitOk;
}

}  // namespace

Command addExportCommand(CLI::App& parent) {
  auto o = std::make_shared<ExportCli>();
  Command c;
  CLI::App* app = parent.add_subcommand(
      "export", "write the run's adapter (PEFT), merged model or full model (Hugging Face)");
  c.app = app;
  app->add_option("--config,-c", o->config, "run configuration (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--set", o->overrides,
                  "override a config key, validated like the file: --set finetune.adapter=DIR "
                  "(repeatable)")
      ->allow_extra_args(false);
  app->add_option("--out,-o", o->out, "output folder (must be empty or absent unless --force)")
      ->required();
  app->add_flag("--merge", o->merge,
                "LoRA: fold the adapter into the base and write a full Hugging Face model");
  app->add_flag("--force", o->force, "replace a non-empty --out folder");
  app->add_option("--dtype", o->dtype,
                  "bf16|fp16|fp32 for full model folders (default: the source checkpoint's)");
  app->add_option("--max-shard-size", o->max_shard_size,
                  "largest safetensors shard of a full model folder: 5GB, 500MB, 2GiB or bytes "
                  "(default 5GB)");
  app->footer(
      "What is exported:\n"
      "  finetune.method lora: the adapter finetune.adapter, or the run's final adapter\n"
      "    <run.output_dir>/adapter when finetune.adapter is unset. Without --merge it is\n"
      "    checked against model.path and written in PEFT layout (adapter_config.json +\n"
      "    adapter_model.safetensors); with --merge, folded into model.path's weights.\n"
      "  finetune.method full: <run.output_dir>/model when it holds a config.json, else\n"
      "    model.path, written as a Hugging Face folder (config, shards, tokenizer files).\n"
      "The output is written to <out>.tmp-<pid> and renamed onto <out> when complete.\n"
      "Exit codes: 0 ok, 1 failure, 2 bad input (the message names the config key or file).");
  c.run = [o] { return runExport(*o); };
  return c;
}

}  // namespace loom::cli
