#include "loom/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <memory>

#include "loom/core/error.hpp"

namespace loom {

spdlog::level::level_enum parseLogLevel(const std::string& level) {
  if (level == "trace") return spdlog::level::trace;
  if (level == "debug") return spdlog::level::debug;
  if (level == "info") return spdlog::level::info;
  if (level == "warn" || level == "warning") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  if (level == "off") return spdlog::level::off;
  throw InputError("--log-level: got '" + level +
                   "', expected one of trace, debug, info, warn, error, off");
}

void setupLogging(const LogIdentity& identity, const std::string& level) {
  // stderr for every rank: stdout stays free for machine-readable output (JSON lines).
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("loom", sink);
  const std::string prefix = "[rank " + std::to_string(identity.rank) + "/" +
                             std::to_string(identity.world_size) + " " + identity.host + "]";
  logger->set_pattern("%Y-%m-%d %H:%M:%S %^%L%$ " + prefix + " %v");
  auto wanted = parseLogLevel(level);
  // Non-zero ranks only report problems.
  if (identity.rank != 0 && wanted < spdlog::level::warn) wanted = spdlog::level::warn;
  logger->set_level(wanted);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace loom
