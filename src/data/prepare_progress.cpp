// See prepare_progress.hpp.

#include "prepare_progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "loom/core/format.hpp"
#include "loom/core/log.hpp"

namespace loom::detail {

PrepareProgress::PrepareProgress(bool enabled, int64_t total_bytes)
    : enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) == 1),
      total_(std::max<int64_t>(total_bytes, 1)),
      start_(Clock::now()),
      last_(start_) {}

PrepareProgress::~PrepareProgress() {
  if (drawn_ && !finished_) std::fputc('\n', stderr);
}

void PrepareProgress::update(int64_t bytes, int64_t tokens, bool final) {
  if (!enabled_) return;
  const auto now = Clock::now();
  const double since_last = std::chrono::duration<double>(now - last_).count();
  if (!final && since_last < (tty_ ? 0.2 : 5.0)) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double fraction = std::min(1.0, static_cast<double>(bytes) / total_);
  const double rate = elapsed > 0 ? bytes / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - bytes) / rate : NAN;
  char line[256];
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::snprintf(line, sizeof(line),
                  "\rprepare %3.0f%% [%s] %.1f/%.1f MB  %.1f MB/s  %s tok/s  ETA %s ",
                  fraction * 100, bar.c_str(), bytes / 1e6, total_ / 1e6, rate / 1e6,
                  formatCount(elapsed > 0 ? tokens / elapsed : 0).c_str(),
                  final ? formatDuration(elapsed).c_str() : formatDuration(eta).c_str());
    std::fputs(line, stderr);
    drawn_ = true;
    finished_ = final;
    if (final) std::fputc('\n', stderr);
    std::fflush(stderr);
  } else {
    std::snprintf(line, sizeof(line), "prepare: %.0f%%, %.1f/%.1f MB, %.1f MB/s, %s tok/s, %s %s",
                  fraction * 100, bytes / 1e6, total_ / 1e6, rate / 1e6,
                  formatCount(elapsed > 0 ? tokens / elapsed : 0).c_str(), final ? "took" : "ETA",
                  final ? formatDuration(elapsed).c_str() : formatDuration(eta).c_str());
    LOOM_INFO(line);
  }
}

}  // namespace loom::detail
