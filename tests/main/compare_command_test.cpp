// `trainer compare` as a user runs it, on the quick start's tiny model (its own tokenizer and
// chat template) with a random PEFT adapter: the report's answers equal `trainer generate`'s
// without and with the adapter, its eval losses equal `trainer eval`'s, its scores equal the
// Python references (rouge-score, nltk) on the same pairs, report.html holds every answer
// (escaped), and bad input exits 2 naming the flag or file with no report written. And
// train.eval_prompts in a two-rank run: rank 0's answers at each evaluation in the log,
// metrics.jsonl and TensorBoard, the last equal to `trainer generate` with the final adapter.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/format.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::ProcessResult;
using testing::runProcess;
using testing::runTrainer;
using testing::TempDir;

std::vector<json> readJsonl(const fs::path& file) {
  std::vector<json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

json lastJsonLine(const std::string& output) {
  std::istringstream in(output);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '{') last = line;
  }
  return last.empty() ? json::object() : json::parse(last);
}

class CompareCommandReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("loom-compare-cmd");
    const fs::path d = dir_->path();
    auto r = runProcess({testing::pythonPath(),
                         (testing::sourceDir() / "tools" / "make_tiny_example.py").string(),
                         "--out", (d / "tiny").string()});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = testing::runPythonScript("eval_reference.py", {"adapter", (d / "tiny" / "model").string(),
                                                       (d / "adapter").string()});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = runTrainer({"prepare", "--tokenizer", (d / "tiny" / "model").string(), "--input",
                    (d / "tiny" / "eval.jsonl").string(), "--format", "alpaca", "--output",
                    (d / "eval.h5").string(), "--seq-len", "128", "--no-progress"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(d / "run.yaml")
        << "run: {name: compare-test, output_dir: " << (d / "run").string()
        << "}\nmodel: {path: " << (d / "tiny" / "model").string()
        << ", dtype: fp32}\nfinetune: {method: lora}\ndata: {train: " << (d / "eval.h5").string()
        << ", eval: " << (d / "eval.h5").string()
        << ", seq_len: 128}\ntrain: {global_batch_tokens: 256, max_steps: 1}\n";
    // The example's two prompts, a third whose reference needs escaping in HTML, and one
    // without a reference (answered, not scored).
    std::ifstream in(d / "tiny" / "compare.jsonl");
    std::ofstream out(d / "prompts.jsonl");
    out << in.rdbuf()
        << "{\"prompt\": \"Sort these animals alphabetically.\", \"reference\": \"<b>bear & "
           "cat</b>\"}\n"
        << "{\"prompt\": \"Say anything.\"}\n";
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path path(const std::string& name) { return dir_->path() / name; }

  static TempDir* dir_;
};

TempDir* CompareCommandReference::dir_ = nullptr;

TEST_F(CompareCommandReference, ReportAgreesWithGenerateEvalAndTheScoreReferences) {
  const std::string model = path("tiny/model").string(), adapter = path("adapter").string();
  const std::string prompts = path("prompts.jsonl").string();
  auto r = runTrainer({"compare", "--config", path("run.yaml").string(), "--adapter", adapter,
                       "--prompts", prompts, "--max-new-tokens", "16", "--out",
                       path("out").string(), "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* text :
       {"before  ROUGE-1", "after   ROUGE-1", "eval loss", "reference:", "report:"}) {
    EXPECT_NE(r.output.find(text), std::string::npos) << "output lacks " << text;
  }
  const json report = json::parse(testing::readFile(path("out/report.json")));
  const json& rows = report["rows"];
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(report["scored"], 3);
  EXPECT_TRUE(rows[3]["reference"].is_null() && rows[3]["after_scores"].is_null());

  // The answers are `trainer generate`'s (greedy, same prompts, same length).
  for (const bool with_adapter : {false, true}) {
    std::vector<std::string> args = {"generate",
                                     "--model",
                                     model,
                                     "--prompts",
                                     prompts,
                                     "--max-new-tokens",
                                     "16",
                                     "--device",
                                     "cpu",
                                     "--output",
                                     path(with_adapter ? "after.jsonl" : "before.jsonl").string()};
    if (with_adapter) args.insert(args.end(), {"--adapter", adapter});
    ASSERT_EQ(runTrainer(args).exit_code, 0);
    const auto generated = readJsonl(path(with_adapter ? "after.jsonl" : "before.jsonl"));
    ASSERT_EQ(generated.size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i][with_adapter ? "after" : "before"], generated[i]["text"]) << i;
      EXPECT_EQ(rows[i]["prompt"], generated[i]["prompt"]) << i;
    }
  }
  int differ = 0;
  for (const auto& row : rows) differ += row["before"] != row["after"] ? 1 : 0;
  EXPECT_GT(differ, 0) << "the random adapter changes some greedy answer";

  // Eval losses are `trainer eval`'s: the same evaluation in another process. The sums run in
  // the same order on the same CPU, so only thread scheduling of reductions could move them:
  // 1e-6 relative is far below the adapter's effect (it moves the loss by ~1e-1).
  const json eval_before = lastJsonLine(
      runTrainer({"eval", "--config", path("run.yaml").string(), "--device", "cpu"}).output);
  const json eval_after =
      lastJsonLine(runTrainer({"eval", "--config", path("run.yaml").string(), "--set",
                               "finetune.adapter=" + adapter, "--device", "cpu"})
                       .output);
  const double before_loss = report["eval"]["before"]["loss"],
               after_loss = report["eval"]["after"]["loss"];
  EXPECT_NEAR(before_loss, eval_before["loss"].get<double>(), 1e-6 * before_loss);
  EXPECT_NEAR(after_loss, eval_after["loss"].get<double>(), 1e-6 * after_loss);
  EXPECT_GT(std::abs(before_loss - after_loss), 1e-3);

  // Scores: rouge-score and nltk on the same (answer, reference) pairs. The report keeps 4
  // decimals of a percent, so it may differ from the reference by 5e-5 percent.
  json pairs = json::array();
  for (const auto& row : rows) {
    if (row["reference"].is_null()) continue;
    for (const char* side : {"before", "after"}) {
      pairs.push_back({{"candidate", row[side]}, {"reference", row["reference"]}});
    }
  }
  const auto pairs_file = dir_->write("pairs.json", pairs.dump());
  const auto py = testing::runPythonScript("text_scores_reference.py", {pairs_file.string()});
  ASSERT_EQ(py.exit_code, 0) << py.output;
  const json want = json::parse(py.output.substr(py.output.find('[')));
  ASSERT_EQ(want.size(), pairs.size());
  double sums[2][4] = {};
  size_t k = 0;
  for (const auto& row : rows) {
    if (row["reference"].is_null()) continue;
    for (int side = 0; side < 2; ++side, ++k) {
      const json& got = row[side == 0 ? "before_scores" : "after_scores"];
      const char* keys[4] = {"rouge-1", "rouge-2", "rouge-l", "bleu-4"};
      const char* refs[4] = {"rouge1", "rouge2", "rougeL", "bleu4"};
      for (int m = 0; m < 4; ++m) {
        EXPECT_NEAR(got[keys[m]].get<double>(), 100 * want[k][refs[m]].get<double>(), 5e-5)
            << "row " << k / 2 << " " << keys[m];
        sums[side][m] += 100 * want[k][refs[m]].get<double>();
      }
    }
  }
  const char* keys[4] = {"rouge-1", "rouge-2", "rouge-l", "bleu-4"};
  for (int m = 0; m < 4; ++m) {
    EXPECT_NEAR(report["averages"]["before"][keys[m]].get<double>(), sums[0][m] / 3, 1e-4);
    EXPECT_NEAR(report["averages"]["after"][keys[m]].get<double>(), sums[1][m] / 3, 1e-4);
  }

  // The page: self-contained, every answer and reference in it, escaped.
  const std::string html = testing::readFile(path("out/report.html"));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_NE(html.find("&lt;b&gt;bear &amp; cat&lt;/b&gt;"), std::string::npos);
  for (const auto& row : rows) {
    EXPECT_NE(html.find(escapeXml(row["after"].get<std::string>())), std::string::npos);
  }
}

TEST_F(CompareCommandReference, BadInputExitsTwoNamingItAndWritesNoReport) {
  const std::string model = path("tiny/model").string();
  // An adapter made for another model (eval_reference.py's own tiny qwen3, other shapes).
  const auto made = testing::runPythonScript("eval_reference.py", {"make", path("other").string()});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto bad_line = dir_->write("bad.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": [1]}\n");
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> expected;
  } cases[] = {
      {{"--adapter", path("other/adapter").string(), "--prompts", path("prompts.jsonl").string()},
       {"adapter_model.safetensors", "shape"}},
      {{"--adapter", path("adapter").string(), "--prompts", bad_line.string()},
       {"bad.jsonl:2", "'prompt'"}},
      {{"--adapter", path("adapter").string(), "--prompts", path("prompts.jsonl").string(),
        "--max-new-tokens", "0"},
       {"--max-new-tokens"}},
      {{"--prompts", path("prompts.jsonl").string()}, {"--adapter"}},
      {{"--adapter", path("nowhere").string(), "--prompts", path("prompts.jsonl").string()},
       {"--adapter", "nowhere", "adapter_config.json"}},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {
        "compare", "--model", model, "--out", path("bad-out").string(), "--device", "cpu"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const auto r = runTrainer(args);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    for (const auto& e : c.expected) EXPECT_NE(r.output.find(e), std::string::npos) << e;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos);
    EXPECT_EQ(r.output.find("compare: before:"), std::string::npos)
        << "refused before any answer is generated (an adapter of another model included)";
    EXPECT_FALSE(fs::exists(path("bad-out"))) << "a refused compare writes nothing";
  }
}

TEST_F(CompareCommandReference, EvalPromptsAreAnsweredDuringTrainingAndLogged) {
  const fs::path run = path("trained");
  std::ofstream(path("train.yaml"))
      << "run: {name: eval-prompts, output_dir: " << run.string()
      << "}\nmodel: {path: " << path("tiny/model").string()
      << ", dtype: fp32}\nfinetune: {method: lora}\ndata: {train: " << path("eval.h5").string()
      << ", eval: " << path("eval.h5").string()
      << ", seq_len: 128}\ntrain: {global_batch_tokens: 1024, max_steps: 4, lr: 1.0e-2, "
         "eval_every: 2, eval_prompts: "
      << path("prompts.jsonl").string()
      << ", eval_max_new_tokens: 8}\ncluster: {backend: mpi, balance: static, ranks: [{device: "
         "cpu, micro_batch: 2}]}\n";
  const auto r = runProcess({testing::requireEnv("LOOM_MPIEXEC"), "-np", "2", "--bind-to", "none",
                             testing::trainerPath(), "--config", path("train.yaml").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("sample at step 2 [1]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sample at step 4 [4] Say anything."), std::string::npos) << r.output;

  std::map<int64_t, json> samples;
  for (const auto& line : readJsonl(run / "metrics.jsonl")) {
    if (line.contains("eval_samples")) samples[line["step"].get<int64_t>()] = line["eval_samples"];
  }
  ASSERT_EQ(samples.size(), 2u) << "evaluations at steps 2 and 4";
  ASSERT_TRUE(samples.count(2) && samples.count(4));
  ASSERT_EQ(samples[4].size(), 4u);
  EXPECT_EQ(samples[4][2]["prompt"], "Sort these animals alphabetically.");

  // The last answers are the final adapter's: the same fp32 weights, generated the same way.
  ASSERT_EQ(runTrainer({"generate", "--model", path("tiny/model").string(), "--adapter",
                        (run / "adapter").string(), "--prompts", path("prompts.jsonl").string(),
                        "--max-new-tokens", "8", "--device", "cpu", "--output",
                        path("final.jsonl").string()})
                .exit_code,
            0);
  const auto final_answers = readJsonl(path("final.jsonl"));
  for (size_t i = 0; i < final_answers.size(); ++i) {
    EXPECT_EQ(samples[4][i]["answer"], final_answers[i]["text"]) << i;
  }

  // TensorBoard: read back by tbparse and TensorBoard's loader (tensorboard_reference.py).
  const auto py = testing::runPythonScript("tensorboard_reference.py",
                                           {run.string(), path("board.json").string()});
  ASSERT_EQ(py.exit_code, 0) << py.output;
  const json board = json::parse(testing::readFile(path("board.json")));
  std::map<std::string, std::vector<int64_t>> steps;
  for (const auto& v : board["scalars"]) steps[v["tag"]].push_back(v["step"].get<int64_t>());
  EXPECT_EQ(steps["train/loss"], (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(steps["eval/loss"], (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(steps["rank1/weight"].size(), 4u);
  std::vector<int64_t> text_steps;
  for (const auto& v : board["text"]) {
    EXPECT_EQ(v["tag"], "eval/samples");
    text_steps.push_back(v["step"].get<int64_t>());
  }
  EXPECT_EQ(text_steps, (std::vector<int64_t>{2, 4}));
  // The scalars are metrics.jsonl's, as float32.
  for (const auto& line : readJsonl(run / "metrics.jsonl")) {
    if (!line.contains("loss") || !line.contains("step")) continue;
    for (const auto& v : board["scalars"]) {
      if (v["tag"] == "train/loss" && v["step"] == line["step"]) {
        EXPECT_EQ(v["value"].get<double>(),
                  static_cast<double>(static_cast<float>(line["loss"].get<double>())));
      }
    }
  }
}

}  // namespace
}  // namespace loom
