#pragma once
// Run observability on rank 0: `metrics.jsonl` (one JSON object per logged step, appended
// and flushed as it goes), TensorBoard event files beside it (train/tensorboard; a new file
// per start of the run, as TensorBoard expects), and a loss-curve picture (SVG) written at
// the end.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace loom {

class TensorBoardWriter;

class MetricsLog {
 public:
  /// Opens `<run_dir>/metrics.jsonl`. A fresh run (`resumed_step` < 0) starts it anew. A run
  /// resumed from a checkpoint after `resumed_step` steps continues it: lines of later steps
  /// (written before the interruption, and about to be redone) are dropped, so every step
  /// appears once, and the kept losses seed the loss curve, which then covers the whole run.
  explicit MetricsLog(const std::filesystem::path& run_dir, int64_t resumed_step = -1);
  ~MetricsLog();
  /// One line of JSON (already serialised).
  void write(const std::string& json_line);
  /// Scalars for TensorBoard at `step` ("train/loss", "rank1/weight", ...).
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  /// Text (markdown) for TensorBoard's text tab.
  void text(const std::string& tag, int64_t step, const std::string& markdown);
  void recordLoss(int64_t step, double loss) { train_.push_back({step, loss}); }
  void recordEval(int64_t step, double loss) { eval_.push_back({step, loss}); }
  /// Writes `<run_dir>/loss.svg`: training loss per step, evaluation loss as dots.
  void writeLossCurve(const std::filesystem::path& path, const std::string& title) const;

 private:
  std::ofstream out_;
  std::unique_ptr<TensorBoardWriter> board_;
  std::vector<std::pair<int64_t, double>> train_;
  std::vector<std::pair<int64_t, double>> eval_;
};

}  // namespace loom
