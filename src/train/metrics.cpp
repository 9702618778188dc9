#include "loom/train/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/format.hpp"
#include "loom/train/tensorboard.hpp"

namespace loom {

MetricsLog::MetricsLog(const std::filesystem::path& run_dir, int64_t resumed_step) {
  std::filesystem::create_directories(run_dir);
  const auto file = run_dir / "metrics.jsonl";
  std::string kept;
  if (resumed_step >= 0 && std::filesystem::exists(file)) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) continue;  // a line cut short by the interruption
      if (j.contains("step") && j["step"].is_number_integer()) {
        const int64_t step = j["step"].get<int64_t>();
        if (step > resumed_step) continue;
        if (j.contains("loss") && j["loss"].is_number() && !j.value("skipped", false)) {
          train_.push_back({step, j["loss"].get<double>()});
        }
        if (j.contains("eval_loss") && j["eval_loss"].is_number()) {
          eval_.push_back({step, j["eval_loss"].get<double>()});
        }
      }
      kept += line + "\n";
    }
  }
  // Rewritten whole (temporary name, then rename), then appended to.
  writeFileAtomic(file, kept);
  out_.open(file, std::ios::app);
  LOOM_CHECK(out_.good(), "cannot open " << file);
  board_ = std::make_unique<TensorBoardWriter>(run_dir);
}

MetricsLog::~MetricsLog() = default;

void MetricsLog::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  for (const auto& [tag, value] : values) board_->addScalar(tag, step, value);
  board_->flush();
}

void MetricsLog::text(const std::string& tag, int64_t step, const std::string& markdown) {
  board_->addText(tag, step, markdown);
  board_->flush();
}

void MetricsLog::write(const std::string& json_line) {
  out_ << json_line << "\n";
  out_.flush();
}

void MetricsLog::writeLossCurve(const std::filesystem::path& path, const std::string& title) const {
  const double w = 720, h = 420, left = 70, right = 20, top = 40, bottom = 50;
  std::vector<std::pair<int64_t, double>> all = train_;
  all.insert(all.end(), eval_.begin(), eval_.end());
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << w / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">"
      << escapeXml(title) << "</text>\n";
  if (!all.empty()) {
    int64_t s0 = all.front().first, s1 = all.front().first;
    double l0 = all.front().second, l1 = all.front().second;
    for (const auto& [s, l] : all) {
      s0 = std::min(s0, s), s1 = std::max(s1, s);
      if (std::isfinite(l)) l0 = std::min(l0, l), l1 = std::max(l1, l);
    }
    if (s1 == s0) s1 = s0 + 1;
    if (l1 - l0 < 1e-9) l1 = l0 + 1;
    auto x = [&](double s) { return left + (s - s0) / double(s1 - s0) * (w - left - right); };
    auto y = [&](double l) { return top + (l1 - l) / (l1 - l0) * (h - top - bottom); };
    svg << "<line x1=\"" << left << "\" y1=\"" << h - bottom << "\" x2=\"" << w - right
        << "\" y2=\"" << h - bottom << "\" stroke=\"black\"/>\n<line x1=\"" << left << "\" y1=\""
        << top << "\" x2=\"" << left << "\" y2=\"" << h - bottom << "\" stroke=\"black\"/>\n";
    for (int i = 0; i <= 4; ++i) {
      const double l = l0 + (l1 - l0) * i / 4.0;
      char label[32];
      std::snprintf(label, sizeof(label), "%.3f", l);
      svg << "<text x=\"" << left - 6 << "\" y=\"" << y(l) + 4 << "\" text-anchor=\"end\">" << label
          << "</text>\n";
      const double s = s0 + (s1 - s0) * i / 4.0;
      svg << "<text x=\"" << x(s) << "\" y=\"" << h - bottom + 18 << "\" text-anchor=\"middle\">"
          << static_cast<int64_t>(std::llround(s)) << "</text>\n";
    }
    svg << "<text x=\"" << (left + w - right) / 2 << "\" y=\"" << h - 10
        << "\" text-anchor=\"middle\">step</text>\n";
    if (!train_.empty()) {
      svg << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"";
      for (const auto& [s, l] : train_) {
        if (std::isfinite(l)) svg << x(s) << "," << y(l) << " ";
      }
      svg << "\"/>\n";
    }
    for (const auto& [s, l] : eval_) {
      svg << "<circle cx=\"" << x(s) << "\" cy=\"" << y(l) << "\" r=\"4\" fill=\"#d62728\"/>\n";
    }
    svg << "<text x=\"" << w - right - 150 << "\" y=\"" << top + 10
        << "\" fill=\"#1f77b4\">train loss</text>\n<text x=\"" << w - right - 150 << "\" y=\""
        << top + 26 << "\" fill=\"#d62728\">eval loss</text>\n";
  }
  svg << "</svg>\n";
  writeFileAtomic(path, svg.str());
}

}  // namespace loom
