#pragma once
// The before/after report of `trainer compare`: each prompt's reference answer beside the
// base model's answer (before) and the fine-tuned model's (after), scored against the
// reference with ROUGE-1/2/L F1 and BLEU-4 (train/text_scores), the averages, the eval loss
// of both when the run has data.eval, and the run's loss curve. Written as report.json and a
// self-contained report.html (no scripts, no network: styles and the curve are inline).

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "loom/train/text_scores.hpp"

namespace loom {

struct CompareRow {
  std::string where;      ///< "prompts.jsonl:3"
  std::string question;   ///< the last user message, as shown to a reader
  std::string prompt;     ///< the rendered prompt text the model was given
  std::string reference;  ///< empty when the record has none (then it is not scored)
  bool has_reference = false;
  std::string before, after;
  std::string before_finish, after_finish;
  TextScores before_scores{}, after_scores{};
};

struct CompareEval {
  double loss = 0;
  double perplexity = 0;
  int64_t tokens = 0;
};

struct CompareReport {
  std::string title;   ///< the run's name, or the model folder's
  std::string before;  ///< what "before" is: "model DIR"
  std::string after;   ///< "model DIR + adapter DIR"
  std::string prompts_file;
  nlohmann::ordered_json settings;  ///< generation settings, as given
  std::vector<CompareRow> rows;
  std::optional<CompareEval> eval_before, eval_after;  ///< on data.eval, when set
  std::string eval_data;
  std::string loss_curve_svg;  ///< the run's loss.svg, inline; empty without a run
};

/// Averages over the rows that have a reference (zeros when none do).
TextScores averageBefore(const CompareReport& report);
TextScores averageAfter(const CompareReport& report);

/// report.json: scores in percent (0-100, as LLaMA-Factory reports them) under the keys
/// "rouge-1", "rouge-2", "rouge-l", "bleu-4".
nlohmann::ordered_json reportJson(const CompareReport& report);

/// report.html, self-contained.
std::string reportHtml(const CompareReport& report);

/// The terminal's summary: averages before and after, eval loss, one line each.
std::string reportSummary(const CompareReport& report);

}  // namespace loom
