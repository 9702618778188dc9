#include "loom/train/compare_report.hpp"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "loom/core/format.hpp"

namespace loom {

namespace {

using json = nlohmann::ordered_json;

TextScores average(const CompareReport& report, bool after) {
  std::vector<TextScores> scores;
  for (const auto& row : report.rows) {
    if (row.has_reference) scores.push_back(after ? row.after_scores : row.before_scores);
  }
  return meanScores(scores);
}

json scoresJson(const TextScores& s) {
  // Percent, rounded to 4 decimals as LLaMA-Factory's predict_results.json has them.
  auto pct = [](double x) { return std::round(x * 100.0 * 1e4) / 1e4; };
  return json{{"rouge-1", pct(s.rouge1)},
              {"rouge-2", pct(s.rouge2)},
              {"rouge-l", pct(s.rougeL)},
              {"bleu-4", pct(s.bleu4)}};
}

json evalJson(const std::optional<CompareEval>& e) {
  if (!e) return nullptr;
  return json{{"loss", e->loss}, {"perplexity", e->perplexity}, {"tokens", e->tokens}};
}

std::string fixed(double x, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, x);
  return text;
}

/// A change cell: green when it went the good way (`higher_is_better`), red otherwise.
std::string changeCell(double before, double after, bool higher_is_better, int digits) {
  const double d = after - before;
  const bool good = higher_is_better ? d > 0 : d < 0;
  const bool bad = higher_is_better ? d < 0 : d > 0;
  return std::string("<td class=\"") +
         (good  ? "up"
          : bad ? "down"
                : "") +
         "\">" + (d > 0 ? "+" : "") + fixed(d, digits) + "</td>";
}

std::string scoreLine(const CompareRow& row, bool after) {
  if (!row.has_reference) return "";
  const TextScores& s = after ? row.after_scores : row.before_scores;
  const TextScores& other = after ? row.before_scores : row.after_scores;
  const char* mood = !after                    ? ""
                     : s.rougeL > other.rougeL ? " up"
                     : s.rougeL < other.rougeL ? " down"
                                               : "";
  return std::string("<div class=\"score") + mood + "\">R1 " + fixed(100 * s.rouge1, 1) + " · R2 " +
         fixed(100 * s.rouge2, 1) + " · RL " + fixed(100 * s.rougeL, 1) + " · BLEU-4 " +
         fixed(100 * s.bleu4, 1) + "</div>";
}

std::string answerCell(const std::string& text, const std::string& finish) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    return "<span class=\"meta\">(" + std::string(text.empty() ? "empty" : "whitespace only") +
           ")</span>" + (finish == "length" ? "<span class=\"cut\"> [max new tokens]</span>" : "");
  }
  std::string cell = escapeXml(text);
  if (finish == "length") cell += "<span class=\"cut\"> [max new tokens]</span>";
  return cell;
}

/// "decoding greedy, max_new_tokens 24, ..." from the settings object.
std::string settingsText(const json& settings) {
  std::string text;
  for (const auto& [key, value] : settings.items()) {
    if (!text.empty()) text += ", ";
    text += key + " " + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return text;
}

constexpr const char* kStyle = R"(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px;
       color: #1f2328; background: #f6f8fa; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #57606a; font-size: 13px; line-height: 1.6; }
table { border-collapse: collapse; background: white; }
table.sum th, table.sum td { padding: 6px 14px; border: 1px solid #d0d7de; text-align: right; }
table.sum th:first-child { text-align: left; }
.up { color: #1a7f37; } .down { color: #cf222e; }
table.rows { width: 100%; table-layout: fixed; font-size: 13px; }
table.rows th { background: #eaeef2; text-align: left; padding: 6px; border: 1px solid #d0d7de; }
table.rows td { vertical-align: top; border: 1px solid #d0d7de; padding: 6px 8px;
                white-space: pre-wrap; overflow-wrap: anywhere; }
td.num { color: #57606a; font-size: 12px; text-align: right; }
.where { color: #57606a; font-size: 11px; margin-top: 6px; white-space: normal; }
.score { font-size: 11px; color: #57606a; margin-top: 6px; white-space: normal; }
.score.up { color: #1a7f37; } .score.down { color: #cf222e; }
.cut { color: #9a6700; font-size: 11px; }
.curve svg { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
)";

}  // namespace

TextScores averageBefore(const CompareReport& report) { return average(report, false); }
TextScores averageAfter(const CompareReport& report) { return average(report, true); }

json reportJson(const CompareReport& report) {
  int64_t scored = 0;
  for (const auto& row : report.rows) scored += row.has_reference ? 1 : 0;
  json j;
  j["title"] = report.title;
  j["before"] = report.before;
  j["after"] = report.after;
  j["prompts_file"] = report.prompts_file;
  j["prompts"] = report.rows.size();
  j["scored"] = scored;
  j["settings"] = report.settings;
  j["tokenization"] = std::string(kScoreTokenization);
  j["averages"] = {{"before", scoresJson(averageBefore(report))},
                   {"after", scoresJson(averageAfter(report))}};
  j["eval"] = {{"data", report.eval_data.empty() ? json(nullptr) : json(report.eval_data)},
               {"before", evalJson(report.eval_before)},
               {"after", evalJson(report.eval_after)}};
  json rows = json::array();
  for (const auto& row : report.rows) {
    json r;
    r["where"] = row.where;
    r["prompt"] = row.prompt;
    r["reference"] = row.has_reference ? json(row.reference) : json(nullptr);
    r["before"] = row.before;
    r["after"] = row.after;
    r["before_finish_reason"] = row.before_finish;
    r["after_finish_reason"] = row.after_finish;
    r["before_scores"] = row.has_reference ? scoresJson(row.before_scores) : json(nullptr);
    r["after_scores"] = row.has_reference ? scoresJson(row.after_scores) : json(nullptr);
    rows.push_back(std::move(r));
  }
  j["rows"] = std::move(rows);
  return j;
}

std::string reportHtml(const CompareReport& report) {
  const TextScores b = averageBefore(report), a = averageAfter(report);
  int64_t scored = 0;
  for (const auto& row : report.rows) scored += row.has_reference ? 1 : 0;
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<title>Before / after: " << escapeXml(report.title) << "</title>\n<style>" << kStyle
    << "</style>\n</head>\n<body>\n<h1>Before / after: " << escapeXml(report.title) << "</h1>\n"
    << "<div class=\"meta\">Before: " << escapeXml(report.before)
    << "<br>After: " << escapeXml(report.after) << "<br>Prompts: " << escapeXml(report.prompts_file)
    << " (" << report.rows.size() << ", " << scored
    << " with a reference answer)<br>Generation: " << escapeXml(settingsText(report.settings))
    << "</div>\n";

  h << "<h2>Averages</h2>\n<table class=\"sum\">\n<tr><th></th><th>ROUGE-1</th><th>ROUGE-2</th>"
       "<th>ROUGE-L</th><th>BLEU-4</th>";
  const bool with_eval = report.eval_before && report.eval_after;
  if (with_eval) h << "<th>eval loss</th><th>perplexity</th>";
  h << "</tr>\n";
  auto score_row = [&](const char* name, const TextScores& s, const std::optional<CompareEval>& e) {
    h << "<tr><th>" << name << "</th><td>" << fixed(100 * s.rouge1, 2) << "</td><td>"
      << fixed(100 * s.rouge2, 2) << "</td><td>" << fixed(100 * s.rougeL, 2) << "</td><td>"
      << fixed(100 * s.bleu4, 2) << "</td>";
    if (with_eval)
      h << "<td>" << fixed(e->loss, 4) << "</td><td>" << fixed(e->perplexity, 2) << "</td>";
    h << "</tr>\n";
  };
  score_row("before", b, report.eval_before);
  score_row("after", a, report.eval_after);
  h << "<tr><th>change</th>" << changeCell(100 * b.rouge1, 100 * a.rouge1, true, 2)
    << changeCell(100 * b.rouge2, 100 * a.rouge2, true, 2)
    << changeCell(100 * b.rougeL, 100 * a.rougeL, true, 2)
    << changeCell(100 * b.bleu4, 100 * a.bleu4, true, 2);
  if (with_eval) {
    h << changeCell(report.eval_before->loss, report.eval_after->loss, false, 4)
      << changeCell(report.eval_before->perplexity, report.eval_after->perplexity, false, 2);
  }
  h << "</tr>\n</table>\n<div class=\"meta\">Scores in percent: F1 of ROUGE-1/2/L and BLEU-4 "
       "(smoothing method 3) of each answer against its reference, averaged over "
    << scored << " prompts. " << escapeXml(kScoreTokenization);
  if (with_eval) {
    h << "<br>Eval loss: mean over " << report.eval_after->tokens << " loss tokens of "
      << escapeXml(report.eval_data) << ".";
  }
  h << "</div>\n";

  h << "<h2>Loss curve</h2>\n";
  if (report.loss_curve_svg.empty()) {
    h << "<div class=\"meta\">No training run given (compare --config names one): no "
         "curve.</div>\n";
  } else {
    h << "<div class=\"curve\">" << report.loss_curve_svg << "</div>\n";
  }

  h << "<h2>Answers</h2>\n<table class=\"rows\">\n<colgroup><col style=\"width:4%\">"
       "<col style=\"width:21%\"><col style=\"width:20%\"><col style=\"width:28%\">"
       "<col style=\"width:28%\"></colgroup>\n<tr><th>#</th><th>prompt</th><th>reference</th>"
       "<th>before</th><th>after</th></tr>\n";
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const CompareRow& row = report.rows[i];
    h << "<tr><td class=\"num\">" << i + 1 << "</td><td>" << escapeXml(row.question)
      << "<div class=\"where\">" << escapeXml(row.where) << "</div></td><td>"
      << (row.has_reference ? escapeXml(row.reference) : "<span class=\"meta\">(none)</span>")
      << "</td><td>" << answerCell(row.before, row.before_finish) << scoreLine(row, false)
      << "</td><td>" << answerCell(row.after, row.after_finish) << scoreLine(row, true)
      << "</td></tr>\n";
  }
  h << "</table>\n<p class=\"meta\">Written by Loom " << LOOM_VERSION
    << " (trainer compare).</p>\n</body>\n</html>\n";
  return h.str();
}

std::string reportSummary(const CompareReport& report) {
  const TextScores b = averageBefore(report), a = averageAfter(report);
  std::ostringstream s;
  auto line = [&](const char* name, const TextScores& t, const std::optional<CompareEval>& e) {
    s << name << "  ROUGE-1 " << fixed(100 * t.rouge1, 2) << "  ROUGE-2 "
      << fixed(100 * t.rouge2, 2) << "  ROUGE-L " << fixed(100 * t.rougeL, 2) << "  BLEU-4 "
      << fixed(100 * t.bleu4, 2);
    if (e) s << "  eval loss " << fixed(e->loss, 4) << "  perplexity " << fixed(e->perplexity, 2);
    s << "\n";
  };
  line("before", b, report.eval_before);
  line("after ", a, report.eval_after);
  return s.str();
}

}  // namespace loom
