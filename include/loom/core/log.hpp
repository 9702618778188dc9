#pragma once
// Rank-aware logging over spdlog. Every line carries `[rank r/N host]`. Info and below
// are printed by rank 0 only (the job speaks with one voice); warnings and errors by
// every rank, since a problem on one card must not be hidden by another's silence.

#include <spdlog/spdlog.h>

#include <string>

namespace loom {

struct LogIdentity {
  int rank = 0;
  int world_size = 1;
  std::string host;
};

/// Installs the default logger for this process. Call once the rank is known (World does);
/// before that, logging goes to a plain stderr logger. `level`: trace|debug|info|warn|error.
void setupLogging(const LogIdentity& identity, const std::string& level = "info");

/// Parses a --log-level value; throws InputError naming the flag and the allowed values.
spdlog::level::level_enum parseLogLevel(const std::string& level);

}  // namespace loom
