#include "loom/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "loom/core/error.hpp"

namespace loom {

namespace {

spdlog::level::level_enum toSpd(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> makeLogger(const std::string& prefix) {
  // stderr for every rank: stdout stays free for machine-readable output (JSON lines).
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("loom", sink);
  logger->set_pattern("%Y-%m-%d %H:%M:%S %^%L%$ " + prefix + "%v");
  logger->flush_on(spdlog::level::warn);
  return logger;
}

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = makeLogger("");
    l->set_level(spdlog::level::info);
    return l;
  }();
  return instance;
}

}  // namespace

LogLevel parseLogLevel(const std::string& level) {
  if (level == "trace") return LogLevel::kTrace;
  if (level == "debug") return LogLevel::kDebug;
  if (level == "info") return LogLevel::kInfo;
  if (level == "warn" || level == "warning") return LogLevel::kWarn;
  if (level == "error") return LogLevel::kError;
  if (level == "off") return LogLevel::kOff;
  throw InputError("--log-level: got '" + level +
                   "', expected one of trace, debug, info, warn, error, off");
}

void setupLogging(const LogIdentity& identity, LogLevel level) {
  const std::string prefix = "[rank " + std::to_string(identity.rank) + "/" +
                             std::to_string(identity.world_size) + " " + identity.host + "] ";
  auto l = makeLogger(prefix);
  // Ranks other than 0 only report problems.
  if (identity.rank != 0 && level < LogLevel::kWarn) level = LogLevel::kWarn;
  l->set_level(toSpd(level));
  logger() = l;
}

bool logEnabled(LogLevel level) { return logger()->should_log(toSpd(level)); }

void logLine(LogLevel level, const std::string& message) {
  logger()->log(toSpd(level), "{}", message);
  if (level >= LogLevel::kWarn) logger()->flush();
}

}  // namespace loom
