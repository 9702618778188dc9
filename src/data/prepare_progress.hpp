#pragma once
// `trainer prepare`'s progress on stderr: a bar redrawn in place when stderr is a terminal,
// else a log line every few seconds, with MB/s, tokens/s and the ETA.

#include <chrono>
#include <cstdint>

namespace loom::detail {

class PrepareProgress {
 public:
  PrepareProgress(bool enabled, int64_t total_bytes);
  /// Ends a bar left unfinished by an error, so the message starts on its own line.
  ~PrepareProgress();
  PrepareProgress(const PrepareProgress&) = delete;
  PrepareProgress& operator=(const PrepareProgress&) = delete;

  /// `bytes` of the input done, `tokens` made so far; `final` prints the last line.
  void update(int64_t bytes, int64_t tokens, bool final = false);

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  bool tty_;
  bool drawn_ = false;
  bool finished_ = false;
  int64_t total_;
  Clock::time_point start_;
  Clock::time_point last_;
};

}  // namespace loom::detail
