// `trainer eval`, `trainer export` and `trainer inspect --model` as a user runs them.
//
// Built twice (tests/main/CMakeLists.txt): without LOOM_REFERENCE_TESTS the `unit` cases
// (bad input, inspect from a config.json written here: no Python); with it the `reference`
// cases, where a tiny model and a PEFT adapter come from transformers/PEFT
// (tests/python/eval_reference.py) and the numbers are compared with theirs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "loom/data/hdf5_dataset.hpp"
#ifdef LOOM_REFERENCE_TESTS
#include <ATen/ATen.h>

#include <cstring>

#include "loom/model/safetensors.hpp"
#endif
#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::ProcessResult;
using testing::runProcess;
using testing::runTrainer;
using testing::TempDir;
using testing::trainerPath;

constexpr int64_t kSeqLen = 32;

/// Writes a token file of random samples over a 300-token vocabulary: one longer than
/// kSeqLen (cut by eval), an empty one, one without targets.
void writeEvalData(const fs::path& path) {
  const std::vector<int64_t> lengths{12, 40, 0, 5, 17, 2, 31, 9, 25, 16, 1, 32, 7, 21};
  std::mt19937 rng(42);
  Hdf5DatasetInfo info;
  info.vocab_size = 300;
  Hdf5DatasetWriter writer(path, info);
  for (size_t i = 0; i < lengths.size(); ++i) {
    std::vector<int32_t> tokens;
    std::vector<uint8_t> mask;
    for (int64_t t = 0; t < lengths[i]; ++t) {
      tokens.push_back(static_cast<int32_t>(rng() % 300));
      mask.push_back(i != 3 && rng() % 10 < 7 ? 1 : 0);
    }
    writer.append(tokens, mask);
  }
  writer.finish();
}

/// A run config; run.output_dir is on line 2, model.path on line 4, finetune.adapter (when
/// given) on line 8 and data.eval (when given) on line 11, or 12 after an adapter.
std::string configText(const std::string& model, const std::string& eval = "",
                       const std::string& adapter = "", const std::string& method = "lora",
                       const std::string& output_dir = "/nonexistent/loom-run") {
  std::ostringstream s;
  s << "run:\n"
    << "  output_dir: " << output_dir << "\n"
    << "model:\n"
    << "  path: " << model << "\n"
    << "  dtype: fp32\n"
    << "finetune:\n"
    << "  method: " << method << "\n"
    << (adapter.empty() ? "" : "  adapter: " + adapter + "\n")
    << "  lora: {r: 8, alpha: 16, dropout: 0.0, targets: [q_proj, v_proj]}\n"
    << "data:\n"
    << "  train: /nonexistent/train.h5\n"
    << (eval.empty() ? "" : "  eval: " + eval + "\n") << "  seq_len: " << kSeqLen << "\n"
    << "train:\n"
    << "  global_batch_tokens: 256\n"
    << "  max_steps: 1\n";
  return s.str();
}

void expectContains(const std::string& text, const std::vector<std::string>& needles) {
  for (const auto& n : needles) {
    EXPECT_NE(text.find(n), std::string::npos) << "output lacks '" << n << "'";
  }
}

#ifndef LOOM_REFERENCE_TESTS

/// A Qwen3-shaped config.json (hidden 64, 2 layers, heads 4/2, head_dim 24, untied).
const char* kTinyConfigJson = R"({
  "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 300,
  "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24,
  "hidden_act": "silu", "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
  "tie_word_embeddings": false, "attention_bias": false, "dtype": "float32"
})";

TEST(EvalCommand, MissingDataEvalNamesTheKeyAndFile) {
  TempDir dir("loom-cmd");
  const auto config = dir.write("run.yaml", configText(dir.path().string()));
  const auto r = runTrainer({"eval", "--config", config.string()});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"data.eval", config.string()});
}

TEST(EvalCommand, BadDataFileNamesTheKeyLineAndFile) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  const auto bad = dir.write("eval.h5", "this is not an HDF5 file\n");
  const auto config = dir.write("run.yaml", configText(dir.path().string(), bad.string()));
  const auto r = runTrainer({"eval", "--config", config.string()});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"data.eval (" + config.string() + ":11", bad.string()});
}

TEST(EvalCommand, MissingModelFolderNamesModelPath) {
  TempDir dir("loom-cmd");
  const auto missing = (dir.path() / "no-such-model").string();
  const auto config = dir.write("run.yaml", configText(missing, "x.h5"));
  const auto r = runTrainer({"eval", "--config", config.string()});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"model.path (" + config.string() + ":4", missing});
}

TEST(EvalCommand, AdapterWithoutAdapterConfigNamesFinetuneAdapter) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  fs::create_directories(dir.path() / "adapter");
  const auto adapter = (dir.path() / "adapter").string();
  const auto config = dir.write("run.yaml", configText(dir.path().string(), "x.h5", adapter));
  for (const char* command : {"eval", "export"}) {
    SCOPED_TRACE(command);
    std::vector<std::string> args{command, "--config", config.string()};
    if (std::string(command) == "export") {
      args.insert(args.end(), {"--out", (dir.path() / "out").string()});
    }
    const auto r = runTrainer(args);
    EXPECT_EQ(r.exit_code, 2);
    expectContains(r.output,
                   {"finetune.adapter (" + config.string() + ":8", adapter, "adapter_config.json"});
  }
  EXPECT_FALSE(fs::exists(dir.path() / "out"));
}

TEST(EvalCommand, BadFlagsAreRefused) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  const auto config = dir.write("run.yaml", configText(dir.path().string(), "x.h5"));
  auto r = runTrainer({"eval", "--config", config.string(), "--device", "gpu"});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"--device", "cpu"});
  r = runTrainer({"eval", "--config", config.string(), "--batch-size", "0"});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"--batch-size"});
}

TEST(ExportCommand, RefusesNonEmptyOutputWithoutForce) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  const auto out = dir.path() / "out";
  fs::create_directories(out);
  std::ofstream(out / "keep.txt") << "mine\n";
  const auto config = dir.write("run.yaml", configText(dir.path().string()));
  const auto r = runTrainer({"export", "--config", config.string(), "--out", out.string()});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {out.string(), "not empty", "--force"});
  EXPECT_TRUE(fs::exists(out / "keep.txt"));
}

// A QLoRA run exports an adapter (fp32, as PEFT keeps it) or a merged 16-bit model; options of
// full model folders are refused for the adapter, naming the option and the method.
TEST(ExportCommand, QloraRefusesFullFolderOptionsForItsAdapter) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  const auto config = dir.write("run.yaml", configText(dir.path().string(), "", "", "qlora"));
  const auto out = dir.path() / "out";
  auto r =
      runTrainer({"export", "--config", config.string(), "--out", out.string(), "--dtype", "bf16"});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"--dtype", "an adapter is written in fp32"});
  EXPECT_FALSE(fs::exists(out));
}

TEST(ExportCommand, NoAdapterToExportNamesBothPlaces) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  const auto run_dir = (dir.path() / "run").string();
  const auto config =
      dir.write("run.yaml", configText(dir.path().string(), "", "", "lora", run_dir));
  auto r =
      runTrainer({"export", "--config", config.string(), "--out", (dir.path() / "out").string()});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"finetune.adapter", "run.output_dir (" + config.string() + ":2",
                            run_dir + "/adapter"});
  // An output folder that holds the input would be destroyed by --force: refused.
  r = runTrainer({"export", "--config", config.string(), "--merge", "--force", "--out",
                  dir.path().string(), "--set", "finetune.method=full"});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"--merge", "full"});
  r = runTrainer({"export", "--config", config.string(), "--force", "--out", dir.path().string(),
                  "--set", "finetune.method=full"});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"overlaps"});
  EXPECT_TRUE(fs::exists(dir.path() / "config.json"));
}

// --max-shard-size takes Hugging Face's spelling (5GB, 500MB) or bytes; zero, negative and
// unknown units are refused naming the flag, before the config is read or anything written.
TEST(ExportCommand, ShardSizeIsCheckedBeforeAnythingElse) {
  TempDir dir("loom-cmd");
  const auto out = dir.path() / "out";
  const auto config = dir.write("run.yaml", "trian: {lr: 1}\n");  // never read: refused first
  for (const std::string bad : {"0", "-5", "5XB", "GB", "1e400"}) {
    const auto r = runTrainer(
        {"export", "--config", config.string(), "--out", out.string(), "--max-shard-size", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    expectContains(r.output, {"--max-shard-size " + bad});
    EXPECT_FALSE(fs::exists(out)) << bad;
  }
}

TEST(InspectModel, CountsFollowTheConfiguredMethod) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  // Default: LoRA r=16 all-linear. Per layer r * (in + out) over q(64->96) k,v(64->48)
  // o(96->64) gate,up(64->96) down(96->64): 16 * (160 + 112 + 112 + 160 * 4) = 16384.
  auto r = runTrainer({"inspect", "--model", dir.path().string()});
  EXPECT_EQ(r.exit_code, 0);
  expectContains(r.output, {"architecture: qwen3, 2 layers, hidden 64", "LoRA r=16", "all-linear",
                            "(32768, ", "memory estimate", "bfloat16: weights"});

  // The config's LoRA: r=8 on q_proj, v_proj: 8 * (160 + 112) * 2 layers = 4352.
  const auto config = dir.write("run.yaml", configText(dir.path().string()));
  r = runTrainer({"inspect", "--model", dir.path().string(), "--config", config.string()});
  EXPECT_EQ(r.exit_code, 0);
  expectContains(r.output, {"LoRA r=8", "q_proj, v_proj", "(4352, "});

  const auto full = dir.write("full.yaml", configText(dir.path().string(), "", "", "full"));
  r = runTrainer({"inspect", "--model", dir.path().string(), "--config", full.string()});
  EXPECT_EQ(r.exit_code, 0);
  expectContains(r.output, {"fine-tuning: full"});

  r = runTrainer({"inspect", "--model", (dir.path() / "nothing").string()});
  EXPECT_EQ(r.exit_code, 2);
  expectContains(r.output, {"--model", "config.json"});
}

TEST(InspectModel, PrintsTheMemoryOfEachKindOfRank) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  const auto config = dir.write(
      "run.yaml", configText(dir.path().string(), "", "", "qlora") +
                      "cluster:\n  ranks:\n    - {match: {gpu: \"1050\"}, dtype: fp32, "
                      "micro_batch: 1, loss_chunk_tokens: 64, gradient_checkpointing: true}\n");
  const auto r =
      runTrainer({"inspect", "--model", dir.path().string(), "--config", config.string()});
  EXPECT_EQ(r.exit_code, 0);
  expectContains(r.output, {"memory per rank", "defaults: fp32, micro_batch 1: base ", "(nf4)",
                            "cluster.ranks[0] (gpu ~ 1050): fp32, micro_batch 1", "(64 tokens)",
                            "checkpointed", "CUDA context"});
}

/// A safetensors file of F32 tensors of zeros, written byte by byte (no libtorch here).
void writeZeroSafetensors(
    const fs::path& path,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, shape] : tensors) {
    uint64_t bytes = 4;
    for (int64_t d : shape) bytes *= static_cast<uint64_t>(d);
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  const std::string text = header.dump();
  const uint64_t length = text.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&length), 8);  // little-endian on every test machine
  out << text << std::string(offset, '\0');
}

TEST(InspectModel, ChecksTheWeightsWhenTheFolderHasThem) {
  TempDir dir("loom-cmd");
  dir.write("config.json", kTinyConfigJson);
  const auto weights = dir.path() / "model.safetensors";
  writeZeroSafetensors(weights,
                       {{"model.embed_tokens.weight", {256, 64}}, {"model.norm.weight", {64}}});
  auto r = runTrainer({"inspect", "--model", dir.path().string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  expectContains(r.output, {"weights: 2 tensors, headers and sizes checked"});

  // Truncated (a download cut short): refused, naming the file, before any count is printed.
  fs::resize_file(weights, fs::file_size(weights) - 100);
  r = runTrainer({"inspect", "--model", dir.path().string()});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expectContains(r.output, {weights.string()});
  EXPECT_EQ(r.output.find("architecture:"), std::string::npos) << r.output;

  // GPTQ/AWQ weights are named as such, not reported as a missing weight.
  writeZeroSafetensors(weights, {{"model.layers.0.self_attn.q_proj.qweight", {8, 96}},
                                 {"model.layers.0.self_attn.q_proj.scales", {1, 96}}});
  r = runTrainer({"inspect", "--model", dir.path().string()});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expectContains(r.output, {weights.parent_path().string(), "q_proj.qweight", "GPTQ/AWQ"});
}

#else  // LOOM_REFERENCE_TESTS

/// The JSON object on the last line of the eval output that starts with '{'.
nlohmann::json lastJsonLine(const std::string& output) {
  std::istringstream in(output);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '{') last = line;
  }
  EXPECT_FALSE(last.empty()) << "no JSON line in the output";
  return last.empty() ? nlohmann::json::object() : nlohmann::json::parse(last);
}

/// The last line of stdout alone must be the JSON (stderr carries progress).
void expectJsonIsLastStdoutLine(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/bin/sh", "-c", "\"$0\" \"$@\" 2>/dev/null | tail -n 1",
                                trainerPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = runProcess(argv);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_TRUE(j.contains("loss") && j.contains("tokens") && j.contains("perplexity") &&
              j.contains("samples"))
      << r.output;
}

struct Reference {
  double loss_sum = 0;
  int64_t tokens = 0;
  int64_t samples = 0;
};

Reference pythonLoss(const std::vector<std::string>& args) {
  auto py = testing::runPythonScript("eval_reference.py", args);
  EXPECT_EQ(py.exit_code, 0) << py.output;
  const auto j = lastJsonLine(py.output);
  return {j.value("loss_sum", 0.0), j.value("tokens", int64_t{0}), j.value("samples", int64_t{0})};
}

void expectEvalEquals(const nlohmann::json& got, const Reference& want, const std::string& what) {
  ASSERT_TRUE(got.contains("loss")) << got.dump();
  const double want_loss = want.loss_sum / static_cast<double>(want.tokens);
  const double rel = std::abs(got["loss"].get<double>() - want_loss) / want_loss;
  std::cout << what << ": loom loss " << got["loss"].get<double>() << ", reference " << want_loss
            << ", rel diff " << rel << " over " << want.tokens << " tokens\n";
  EXPECT_LE(rel, 1e-5);
  EXPECT_EQ(got["tokens"].get<int64_t>(), want.tokens);
  EXPECT_EQ(got["samples"].get<int64_t>(), want.samples);
  EXPECT_NEAR(got["perplexity"].get<double>(), std::exp(got["loss"].get<double>()),
              1e-9 * got["perplexity"].get<double>());
}

/// A tiny transformers model in dir/model and a PEFT adapter with random A and B in dir/adapter.
void makeModelAndAdapter(const TempDir& dir) {
  const auto py = testing::runPythonScript("eval_reference.py", {"make", dir.path().string()});
  ASSERT_EQ(py.exit_code, 0) << py.output;
}

// `trainer generate` as a user runs it, on the quick start's tiny model with its tokenizer
// (tools/make_tiny_example.py): the records of --output, a --stop text ending an answer where
// it begins, the greedy ids equal to the library's (model/generate, compared with
// transformers in tests/model/generate_test.cpp), and bad flags refused naming the flag.
TEST(GenerateCommandReference, AnswersPromptsAndStopsWhereAsked) {
  TempDir dir("loom-generate-cmd");
  const auto made = runProcess({testing::pythonPath(),
                                (testing::sourceDir() / "tools" / "make_tiny_example.py").string(),
                                "--out", (dir.path() / "tiny").string()});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto model = (dir.path() / "tiny" / "model").string();
  const auto prompts =
      dir.write("p.jsonl",
                "{\"instruction\": \"Name a color.\", \"input\": \"\"}\n"
                "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
                "\"assistant\", \"content\": \"hello\"}]}\n{\"prompt\": \"Count to three.\"}\n");
  const auto out = dir.path() / "out.jsonl";
  auto r = runTrainer({"generate", "--model", model, "--prompts", prompts.string(), "--output",
                       out.string(), "--max-new-tokens", "12", "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expectContains(r.output, {"prefill", "decode", "tokens/s", "3 answer(s) written"});
  std::vector<nlohmann::json> records;
  {
    std::ifstream in(out);
    for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1]["prompt"], "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
      << "the reference answer of a chat record is left out; the generation prompt added";
  for (const auto& rec : records) {
    EXPECT_TRUE(rec.contains("text") && rec.contains("tokens_per_s")) << rec.dump();
    const auto n = rec["token_ids"].size();
    EXPECT_TRUE(rec["finish_reason"] == "length" ? n == 12 : n <= 12) << rec.dump();
  }
  // A --stop text taken from the greedy answer ends it where the text begins.
  // (Two printable ASCII characters whose first occurrence is past the start of an answer;
  // the tiny model's untrained answers are mostly odd bytes and newlines.)
  std::string prompt, text, stop;
  size_t at = 0;
  const std::vector<std::string> asked = {"Name a color.", "hi", "Count to three."};
  for (size_t i = 0; i < records.size() && stop.empty(); ++i) {
    if (i == 1) continue;  // a conversation, not a plain --prompt
    const std::string t = records[i]["text"];
    for (size_t k = 1; k + 2 <= t.size() && stop.empty(); ++k) {
      const std::string s = t.substr(k, 2);
      const bool printable = s[0] > 0x20 && s[0] < 0x7f && s[1] > 0x20 && s[1] < 0x7f;
      if (printable && t.find(s) == k) stop = s, at = k, text = t, prompt = asked[i];
    }
  }
  if (stop.empty()) {  // no such pair: the first character of the last answer
    text = records[2]["text"];
    ASSERT_FALSE(text.empty());
    stop = text.substr(0, 1), at = 0, prompt = asked[2];
  }
  {
    const auto out2 = dir.path() / "out2.jsonl";
    r = runTrainer({"generate", "--model", model, "--prompt", prompt, "--output", out2.string(),
                    "--max-new-tokens", "12", "--stop", stop, "--device", "cpu"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(out2);
    std::string line;
    std::getline(in, line);
    const auto rec = nlohmann::json::parse(line);
    EXPECT_EQ(rec["finish_reason"], "stop_string") << rec.dump();
    EXPECT_EQ(rec["text"], text.substr(0, at)) << rec.dump();
  }
  for (const auto& [flag, value] :
       std::vector<std::pair<std::string, std::string>>{{"--top-p", "0"},
                                                        {"--temperature", "-1"},
                                                        {"--max-new-tokens", "0"},
                                                        {"--chat-template", "mistral"},
                                                        {"--device", "gpu"}}) {
    r = runTrainer({"generate", "--model", model, "--prompt", "x", flag, value});
    EXPECT_EQ(r.exit_code, 2) << flag << " " << value << ": " << r.output;
    expectContains(r.output, {flag});
  }
  r = runTrainer({"generate", "--model", model});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expectContains(r.output, {"--prompt"});
}

TEST(EvalCommandReference, LossEqualsTransformersAndPeft) {
  TempDir dir("loom-eval-ref");
  ASSERT_NO_FATAL_FAILURE(makeModelAndAdapter(dir));
  const auto model = (dir.path() / "model").string(), adapter = (dir.path() / "adapter").string();
  const auto data = dir.path() / "eval.h5";
  writeEvalData(data);
  const auto base_cfg = dir.write("base.yaml", configText(model, data.string()));
  const auto peft_cfg = dir.write("peft.yaml", configText(model, data.string(), adapter));

  const Reference base_ref = pythonLoss({"loss", model, data.string(), std::to_string(kSeqLen)});
  const Reference peft_ref =
      pythonLoss({"loss", model, data.string(), std::to_string(kSeqLen), "--adapter", adapter});
  ASSERT_GT(base_ref.tokens, 0);
  EXPECT_GT(std::abs(peft_ref.loss_sum - base_ref.loss_sum), 1e-3 * base_ref.loss_sum)
      << "the adapter should change the loss";

  // Base (with a fresh LoRA, B = 0: the base's loss), packed and one sample per row.
  auto r = runTrainer({"eval", "--config", base_cfg.string(), "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0);
  expectEvalEquals(lastJsonLine(r.output), base_ref, "base, packed");
  r = runTrainer({"eval", "--config", base_cfg.string(), "--device", "cpu", "--batch-size", "1",
                  "--set", "data.packing=false"});
  ASSERT_EQ(r.exit_code, 0);
  expectEvalEquals(lastJsonLine(r.output), base_ref, "base, unpacked");
  r = runTrainer(
      {"eval", "--config", base_cfg.string(), "--device", "cpu", "--set", "finetune.method=full"});
  ASSERT_EQ(r.exit_code, 0);
  expectEvalEquals(lastJsonLine(r.output), base_ref, "base, method full");

  r = runTrainer({"eval", "--config", peft_cfg.string(), "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0);
  expectEvalEquals(lastJsonLine(r.output), peft_ref, "PEFT adapter");
  expectJsonIsLastStdoutLine({"eval", "--config", peft_cfg.string(), "--device", "cpu"});
}

TEST(ExportCommandReference, OutputsLoadInTransformersAndPeft) {
  TempDir dir("loom-export-ref");
  ASSERT_NO_FATAL_FAILURE(makeModelAndAdapter(dir));
  const auto model = (dir.path() / "model").string(), adapter = (dir.path() / "adapter").string();
  const auto run_dir = (dir.path() / "run").string();
  const auto config = dir.write("peft.yaml", configText(model, "", adapter, "lora", run_dir));
  const auto merged = dir.path() / "exports" / "merged";
  const auto exported_adapter = dir.path() / "exports" / "adapter";
  const auto full = dir.path() / "exports" / "full";

  auto r = runTrainer({"export", "--config", config.string(), "--out", merged.string(), "--merge",
                       "--max-shard-size", "100000"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_TRUE(fs::exists(merged / "model.safetensors.index.json")) << "expected shards";
  r = runTrainer({"export", "--config", config.string(), "--out", exported_adapter.string()});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_TRUE(fs::exists(exported_adapter / "adapter_config.json"));
  // Full method: the run has no final model folder, so model.path is re-saved.
  const auto full_cfg = dir.write("full.yaml", configText(model, "", "", "full", run_dir));
  r = runTrainer({"export", "--config", full_cfg.string(), "--out", full.string()});
  ASSERT_EQ(r.exit_code, 0);

  // Nothing staged is left behind, and a second export needs --force.
  for (const auto& entry : fs::directory_iterator(dir.path() / "exports")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
  r = runTrainer({"export", "--config", config.string(), "--out", merged.string(), "--merge"});
  EXPECT_EQ(r.exit_code, 2);
  r = runTrainer(
      {"export", "--config", config.string(), "--out", merged.string(), "--merge", "--force"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_FALSE(fs::exists(merged / "model.safetensors.index.json")) << "old shards replaced";

  const std::string peft = "peft:" + model + ":" + adapter;
  auto py = testing::runPythonScript(
      "eval_reference.py", {"verify", "--tol", "1e-4", "full:" + merged.string() + "=" + peft,
                            "peft:" + model + ":" + exported_adapter.string() + "=" + peft,
                            "full:" + full.string() + "=full:" + model});
  std::cout << py.output;
  EXPECT_EQ(py.exit_code, 0) << py.output;
}

// ---- QLoRA: an NF4 base against bitsandbytes ---------------------------------------------
// Loom's NF4 bytes equal bitsandbytes' (nf4_reference_test), so the losses may differ only by
// summation order: 1e-6 relative. A wrong 4-bit byte moves a weight by a tenth of its block's
// absmax and these losses by 1e-4 or more, which 1e-6 sees.

void expectEvalNear(const nlohmann::json& got, const Reference& want, const std::string& what,
                    double tol) {
  ASSERT_TRUE(got.contains("loss")) << got.dump();
  const double want_loss = want.loss_sum / static_cast<double>(want.tokens);
  const double rel = std::abs(got["loss"].get<double>() - want_loss) / want_loss;
  std::cout << what << ": loom loss " << got["loss"].get<double>() << ", reference " << want_loss
            << ", rel diff " << rel << " over " << want.tokens << " tokens\n";
  EXPECT_LE(rel, tol);
  EXPECT_EQ(got["tokens"].get<int64_t>(), want.tokens);
}

void makeBnbModel(const TempDir& dir, const std::string& variant) {
  const auto py = testing::runPythonScript("eval_reference.py",
                                           {"make", dir.path().string(), "--variant", variant});
  ASSERT_EQ(py.exit_code, 0) << py.output;
}

TEST(QloraReference, EvalEqualsTransformersWithBitsandbytes4bit) {
  for (const std::string variant : {"qwen3_bnb", "qwen2_bnb", "llama_bnb"}) {
    SCOPED_TRACE(variant);
    TempDir dir("loom-qlora-ref");
    ASSERT_NO_FATAL_FAILURE(makeBnbModel(dir, variant));
    const auto model = (dir.path() / "model").string();
    const auto adapter = (dir.path() / "adapter").string();
    const auto data = dir.path() / "eval.h5";
    writeEvalData(data);
    const std::string seq = std::to_string(kSeqLen);
    const Reference base16 = pythonLoss({"loss", model, data.string(), seq});
    const Reference base4 = pythonLoss({"loss", model, data.string(), seq, "--4bit"});
    const Reference peft4 =
        pythonLoss({"loss", model, data.string(), seq, "--4bit", "--adapter", adapter});
    ASSERT_GT(base4.tokens, 0);
    const double moved = std::abs(base4.loss_sum - base16.loss_sum) / base16.loss_sum;
    std::cout << variant << ": 4-bit rounding moves the loss by " << moved << " (relative)\n";
    EXPECT_GT(moved, 1e-5) << "the 4-bit base should differ visibly from the 16-bit one";

    const auto base_cfg = dir.write("base.yaml", configText(model, data.string(), "", "qlora"));
    const auto peft_cfg =
        dir.write("peft.yaml", configText(model, data.string(), adapter, "qlora"));
    auto r = runTrainer({"eval", "--config", base_cfg.string(), "--device", "cpu"});
    ASSERT_EQ(r.exit_code, 0);
    expectEvalNear(lastJsonLine(r.output), base4, variant + " qlora base vs bnb", 1e-6);
    r = runTrainer({"eval", "--config", peft_cfg.string(), "--device", "cpu"});
    ASSERT_EQ(r.exit_code, 0);
    expectEvalNear(lastJsonLine(r.output), peft4, variant + " qlora + PEFT adapter vs bnb", 1e-6);
  }
}

TEST(QloraReference, TrainedAdapterPrequantizedFolderAndMergeAgreeWithTransformers) {
  TempDir dir("loom-qlora-train");
  ASSERT_NO_FATAL_FAILURE(makeBnbModel(dir, "qwen3_bnb"));
  const auto model = (dir.path() / "model").string();
  const auto data = dir.path() / "data.h5";
  writeEvalData(data);
  const std::string seq = std::to_string(kSeqLen);
  const auto run_dir = dir.path() / "run";
  const auto cfg =
      dir.write("train.yaml", configText(model, data.string(), "", "qlora", run_dir.string()));
  auto r = runTrainer({"--config", cfg.string(), "--set", "data.train=" + data.string(), "--set",
                       "train.max_steps=3", "--set", "train.lr=1e-2", "--set",
                       "checkpoint.resume=never"});
  ASSERT_EQ(r.exit_code, 0);
  const auto adapter = (run_dir / "adapter").string();
  ASSERT_TRUE(fs::exists(run_dir / "adapter" / "adapter_config.json"));

  // The adapter Loom trained, in PEFT over transformers' 4-bit base.
  const Reference peft4 =
      pythonLoss({"loss", model, data.string(), seq, "--4bit", "--adapter", adapter});
  const auto eval_cfg = dir.write("eval.yaml", configText(model, data.string(), adapter, "qlora"));
  r = runTrainer({"eval", "--config", eval_cfg.string(), "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0);
  const auto loom_qlora = lastJsonLine(r.output);
  expectEvalNear(loom_qlora, peft4, "Loom-trained QLoRA adapter vs PEFT over bnb 4-bit", 1e-6);

  // A folder transformers saved in 4-bit loads as it is: the same bytes, the same loss.
  const auto m4 = (dir.path() / "model-bnb-4bit").string();
  auto py = testing::runPythonScript("eval_reference.py", {"save4bit", model, m4});
  ASSERT_EQ(py.exit_code, 0) << py.output;
  const auto pre_cfg = dir.write("pre.yaml", configText(m4, data.string(), adapter, "qlora"));
  r = runTrainer({"eval", "--config", pre_cfg.string(), "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0);
  const auto loom_pre = lastJsonLine(r.output);
  std::cout << "pre-quantized folder: loss " << loom_pre["loss"] << ", quantized by Loom "
            << loom_qlora["loss"] << "\n";
  EXPECT_EQ(loom_pre["loss"].get<double>(), loom_qlora["loss"].get<double>());
  expectEvalNear(loom_pre,
                 pythonLoss({"loss", m4, data.string(), seq, "--4bit", "--adapter", adapter}),
                 "pre-quantized folder vs transformers loading it", 1e-6);

  // A malformed 4-bit folder is refused: exit 2 naming the file and the tensor's key.
  struct Corruption {
    std::string name, json_from, json_to, expect;
  };
  for (const Corruption& c :
       {Corruption{"blocksize", "\"blocksize\": 64", "\"blocksize\": 48", "blocksize 48"},
        Corruption{"json", "\"quant_type\"", "\"quant_type", "not valid JSON"}}) {
    const fs::path bad = dir.path() / ("bad-" + c.name);
    fs::create_directories(bad);
    fs::copy_file(fs::path(m4) / "config.json", bad / "config.json");
    NamedTensors tensors;
    SafetensorsFile file(fs::path(m4) / "model.safetensors");
    const std::string victim = "model.layers.1.mlp.up_proj.weight.quant_state.bitsandbytes__nf4";
    for (const auto& name : file.names()) {
      at::Tensor t = file.tensor(name).clone();
      if (name == victim) {
        std::string text(reinterpret_cast<const char*>(t.data_ptr()), t.numel());
        ASSERT_NE(text.find(c.json_from), std::string::npos) << text;
        text.replace(text.find(c.json_from), c.json_from.size(), c.json_to);
        t = at::empty({static_cast<int64_t>(text.size())}, at::kByte);
        std::memcpy(t.data_ptr(), text.data(), text.size());
      }
      tensors.emplace_back(name, t);
    }
    saveSafetensors(bad / "model.safetensors", tensors);
    const auto bad_cfg =
        dir.write("bad-" + c.name + ".yaml", configText(bad.string(), data.string(), "", "qlora"));
    r = runTrainer({"eval", "--config", bad_cfg.string(), "--device", "cpu"});
    EXPECT_EQ(r.exit_code, 2) << c.name;
    expectContains(r.output, {(bad / "model.safetensors").string(), victim, c.expect});
  }

  // export --merge of a QLoRA run merges into the 16-bit base (what QLoRA users ship).
  const auto merged = dir.path() / "merged";
  const auto export_cfg =
      dir.write("export.yaml", configText(model, "", "", "qlora", run_dir.string()));
  r = runTrainer({"export", "--config", export_cfg.string(), "--out", merged.string(), "--merge"});
  ASSERT_EQ(r.exit_code, 0);
  const auto merged_config = nlohmann::json::parse(testing::readFile(merged / "config.json"));
  EXPECT_FALSE(merged_config.contains("quantization_config"));
  py = testing::runPythonScript(
      "eval_reference.py",
      {"verify", "--tol", "1e-4", "full:" + merged.string() + "=peft:" + model + ":" + adapter});
  std::cout << py.output;
  EXPECT_EQ(py.exit_code, 0) << py.output;
}

#endif  // LOOM_REFERENCE_TESTS

}  // namespace
}  // namespace loom
