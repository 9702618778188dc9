#pragma once
// Rank-aware logging. Every line carries `[rank r/N host]`. Info and below are printed by
// rank 0 only (the job speaks with one voice); warnings and errors by every rank, since a
// problem on one card must not be hidden by another's silence.
//
// This header deliberately does not include spdlog or fmt: the torch wheel bundles its own
// fmt (v12) in its include path, which clashes with the system fmt that spdlog is built
// against. Translation units that include libtorch log through these stream macros:
//   LOOM_INFO("loaded " << n << " tensors from " << path);
// spdlog itself stays inside src/core/log.cpp.

#include <sstream>
#include <string>

namespace loom {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

struct LogIdentity {
  int rank = 0;
  int world_size = 1;
  std::string host;
};

/// Installs the process's logger. Call once the rank is known (main does, after the World);
/// before that, lines go to stderr without a rank prefix.
void setupLogging(const LogIdentity& identity, LogLevel level = LogLevel::kInfo);

/// Parses a --log-level value (trace|debug|info|warn|error|off); throws InputError.
LogLevel parseLogLevel(const std::string& level);

/// True when a message of `level` would be printed by this rank.
bool logEnabled(LogLevel level);

/// Prints one line at `level` (use the LOOM_* macros instead).
void logLine(LogLevel level, const std::string& message);

}  // namespace loom

#define LOOM_LOG_AT(level, message)                   \
  do {                                                \
    if (::loom::logEnabled(level)) {                  \
      std::ostringstream loom_log_stream_;            \
      loom_log_stream_ << message;                    \
      ::loom::logLine(level, loom_log_stream_.str()); \
    }                                                 \
  } while (false)

#define LOOM_DEBUG(message) LOOM_LOG_AT(::loom::LogLevel::kDebug, message)
#define LOOM_INFO(message) LOOM_LOG_AT(::loom::LogLevel::kInfo, message)
#define LOOM_WARN(message) LOOM_LOG_AT(::loom::LogLevel::kWarn, message)
#define LOOM_ERROR(message) LOOM_LOG_AT(::loom::LogLevel::kError, message)
