// Generation (model/generate) against transformers: greedy ids of model.generate on a
// left-padded batch, with and without a PEFT adapter, an EOS that stops one row early; the
// logits processors on fixed logits; and, within Loom, KV-cache decoding against recomputing
// the whole sequence, seeded sampling repeating itself, top-k 1 equal to greedy.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "loom/model/decoder.hpp"
#include "loom/model/generate.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
#include "model_test_util.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::TempDir;

const std::vector<std::vector<int64_t>> kPrompts = {
    {5, 17, 42, 7, 99, 3}, {8, 250, 13}, {77, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {123}};
constexpr int64_t kPad = 0;
constexpr int64_t kNewTokens = 32;

struct Reference {
  nlohmann::json result;
  std::filesystem::path dir;
};

/// Runs generate_reference.py once for every model and the processor cases.
const Reference& reference() {
  static TempDir dir("loom-generate");
  static Reference ref = [] {
    nlohmann::json spec;
    spec["dir"] = dir.path().string();
    spec["models"] =
        nlohmann::json::array({{{"variant", "qwen3"}, {"adapter", false}},
                               {{"variant", "qwen3"}, {"adapter", true}},
                               {{"variant", "qwen2"}, {"adapter", false}},
                               {{"variant", "llama"}, {"adapter", false}},
                               {{"variant", "llama"}, {"adapter", true}},
                               // QLoRA: the NF4 base with an adapter.
                               {{"variant", "qwen3_bnb"}, {"adapter", true}, {"four_bit", true}}});
    spec["prompts"] = kPrompts;
    spec["max_new_tokens"] = kNewTokens;
    spec["pad"] = kPad;
    // Fixed logits with ties and a wide spread, and sequences that repeat ids.
    at::Tensor logits =
        at::randn({3, 40}, at::make_generator<at::CPUGeneratorImpl>(5), at::kFloat) * 3;
    logits[0][7] = logits[0][8];
    std::vector<std::vector<float>> rows;
    for (int64_t r = 0; r < logits.size(0); ++r) {
      rows.emplace_back(logits[r].data_ptr<float>(), logits[r].data_ptr<float>() + 40);
    }
    spec["processors"]["logits"] = rows;
    spec["processors"]["sequences"] = {{1, 7, 7, 30}, {0, 0, 2, 39}, {5, 6, 8, 8}};
    nlohmann::json settings = nlohmann::json::array();
    for (const auto& [t, k, p, r] : std::vector<std::tuple<double, int, double, double>>{
             {0.0, 0, 1.0, 1.3},   // greedy with a repetition penalty
             {0.7, 5, 1.0, 1.0},   // temperature and top-k
             {1.0, 0, 0.8, 1.0},   // top-p
             {1.3, 12, 0.5, 0.8},  // all of them (a penalty below 1 favours repeats)
             {0.5, 1, 1.0, 1.0}}) {
      settings.push_back(
          {{"temperature", t}, {"top_k", k}, {"top_p", p}, {"repetition_penalty", r}});
    }
    spec["processors"]["settings"] = settings;
    const auto spec_path = dir.path() / "spec.json";
    std::ofstream(spec_path) << spec.dump();
    const auto out_path = dir.path() / "out.json";
    const auto py =
        testing::runPythonScript("generate_reference.py", {spec_path.string(), out_path.string()});
    EXPECT_EQ(py.exit_code, 0) << py.output;
    Reference r;
    r.dir = dir.path();
    std::ifstream in(out_path);
    if (in) r.result = nlohmann::json::parse(in);
    r.result["spec"] = spec;
    return r;
  }();
  return ref;
}

std::shared_ptr<CausalLm> load(const std::string& name) {
  const bool adapter = name.find("+adapter") != std::string::npos;
  const auto dir = reference().dir / name.substr(0, name.find('+'));
  DecoderOptions options;
  options.nf4_base = name.find("+4bit") != std::string::npos;  // quantized at load, as QLoRA
  auto model = loadModel(dir, options);
  if (adapter) loadAdapter(*model, dir / "adapter");
  return model;
}

TEST(GenerateReference, GreedyIdsEqualTransformersGenerate) {
  const auto& greedy = reference().result["greedy"];
  ASSERT_EQ(greedy.size(), 6u) << reference().result.dump();
  for (const auto& [name, entry] : greedy.items()) {
    auto model = load(name);
    for (size_t round = 0; round < 2; ++round) {
      SCOPED_TRACE(name + " eos " + entry["eos"][round].dump());
      SamplingSettings s;
      s.max_new_tokens = kNewTokens;
      s.stop_ids = {entry["eos"][round].get<int64_t>()};
      const auto got = generate(*model, kPrompts, s, kPad);
      const auto want = entry["tokens"][round].get<std::vector<std::vector<int64_t>>>();
      ASSERT_EQ(got.size(), want.size());
      for (size_t r = 0; r < got.size(); ++r) {
        EXPECT_EQ(got[r].tokens, want[r]) << "row " << r;
        const bool stopped = !want[r].empty() && want[r].back() == s.stop_ids[0];
        EXPECT_EQ(got[r].finish_reason, stopped ? "stop" : "length") << "row " << r;
      }
      if (round == 1) EXPECT_LE(got[0].tokens.size(), 6u) << "row 0 stops early";
    }
  }
}

TEST(GenerateReference, LogitsProcessorsEqualTransformers) {
  const auto& spec = reference().result["spec"]["processors"];
  const auto& processed = reference().result["processed"];
  ASSERT_EQ(processed.size(), spec["settings"].size());
  const auto logits_rows = spec["logits"].get<std::vector<std::vector<float>>>();
  at::Tensor logits = at::empty({3, 40}, at::kFloat);
  for (int64_t r = 0; r < 3; ++r) {
    std::memcpy(logits[r].data_ptr<float>(), logits_rows[r].data(), 40 * sizeof(float));
  }
  const auto seq_rows = spec["sequences"].get<std::vector<std::vector<int64_t>>>();
  at::Tensor sequences = at::empty({3, 4}, at::kLong);
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t c = 0; c < 4; ++c) sequences[r][c] = seq_rows[r][c];
  }
  for (size_t i = 0; i < processed.size(); ++i) {
    const auto& js = spec["settings"][i];
    SCOPED_TRACE(js.dump());
    SamplingSettings s;
    s.temperature = js["temperature"];
    s.top_k = js["top_k"];
    s.top_p = js["top_p"];
    s.repetition_penalty = js["repetition_penalty"];
    const at::Tensor got = processLogits(logits, sequences, s);
    for (int64_t r = 0; r < 3; ++r) {
      for (int64_t v = 0; v < 40; ++v) {
        const auto& want = processed[i][r][v];
        const float g = got[r][v].item<float>();
        if (want.is_null()) {
          EXPECT_TRUE(std::isinf(g) && g < 0) << "row " << r << " id " << v << ": " << g;
        } else {
          // The same fp32 ops in the same order: equal to rounding.
          EXPECT_NEAR(g, want.get<double>(), 1e-6) << "row " << r << " id " << v;
        }
      }
    }
  }
}

TEST(Generate, KvCacheDecodingEqualsRecomputingTheWholeSequence) {
  auto model = load("qwen3");
  SamplingSettings s;
  s.max_new_tokens = 16;
  for (const auto& prompt : kPrompts) {
    const auto cached = generate(*model, {prompt}, s, kPad);
    std::vector<int64_t> seq = prompt;
    at::NoGradGuard no_grad;
    for (int64_t step = 0; step < s.max_new_tokens; ++step) {
      DecoderInput in;
      in.tokens = at::tensor(seq, at::kLong).unsqueeze(0);
      const at::Tensor hidden = model->hidden(in);
      seq.push_back(model->logits(hidden.select(1, hidden.size(1) - 1)).argmax(-1).item<int64_t>());
    }
    EXPECT_EQ(cached[0].tokens, std::vector<int64_t>(seq.begin() + prompt.size(), seq.end()));
  }
}

TEST(Generate, SeededSamplingRepeatsAndTopKOneIsGreedy) {
  auto model = load("qwen3");
  SamplingSettings s;
  s.max_new_tokens = 12;
  s.temperature = 1.5;
  s.seed = 42;
  const auto a = generate(*model, kPrompts, s, kPad);
  const auto b = generate(*model, kPrompts, s, kPad);
  s.seed = 43;
  const auto c = generate(*model, kPrompts, s, kPad);
  bool any_differs = false;
  for (size_t r = 0; r < a.size(); ++r) {
    EXPECT_EQ(a[r].tokens, b[r].tokens) << "row " << r;
    any_differs = any_differs || a[r].tokens != c[r].tokens;
  }
  EXPECT_TRUE(any_differs) << "another seed gave the same samples: not sampling?";
  s.top_k = 1;
  SamplingSettings greedy;
  greedy.max_new_tokens = 12;
  const auto k1 = generate(*model, kPrompts, s, kPad);
  const auto g = generate(*model, kPrompts, greedy, kPad);
  for (size_t r = 0; r < g.size(); ++r) EXPECT_EQ(k1[r].tokens, g[r].tokens) << "row " << r;
}

TEST(Generate, SettingsOutOfRangeNameTheFlag) {
  SamplingSettings s;
  s.top_p = 0;
  testing::expectInputError([&] { s.validate(); }, {"--top-p"});
  s = SamplingSettings{};
  s.temperature = -1;
  testing::expectInputError([&] { s.validate(); }, {"--temperature"});
  s = SamplingSettings{};
  s.max_new_tokens = 0;
  testing::expectInputError([&] { s.validate(); }, {"--max-new-tokens"});
}

}  // namespace
}  // namespace loom
