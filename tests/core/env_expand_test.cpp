#include "loom/core/env_expand.hpp"

#include <gtest/gtest.h>

#include <map>

namespace loom {
namespace {

EnvLookup fakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(EnvExpand, ReplacesPlaceholdersFromTheEnvironment) {
  const auto env = fakeEnv({{"SLURM_JOB_ID", "4242"}, {"SLURM_ARRAY_TASK_ID", "3"}, {"E", ""}});
  EXPECT_EQ(expandEnv("runs/${SLURM_JOB_ID}", env), "runs/4242");
  EXPECT_EQ(expandEnv("runs/${SLURM_JOB_ID}_${SLURM_ARRAY_TASK_ID}/x", env), "runs/4242_3/x");
  EXPECT_EQ(expandEnv("no placeholders", env), "no placeholders");
  EXPECT_EQ(expandEnv("set but empty: [${E}]", env), "set but empty: []");
}

TEST(EnvExpand, DefaultsApplyWhenUnsetOrEmpty) {
  const auto env = fakeEnv({{"SET", "a"}, {"EMPTY", ""}});
  EXPECT_EQ(expandEnv("runs/${SLURM_JOB_ID:-local}", env), "runs/local");
  EXPECT_EQ(expandEnv("${EMPTY:-d}", env), "d");
  EXPECT_EQ(expandEnv("${SET:-d}", env), "a");
  EXPECT_EQ(expandEnv("${UNSET:-}", env), "");
}

TEST(EnvExpand, DoubleDollarIsALiteralDollarAndEscapeRoundTrips) {
  const auto env = fakeEnv({});
  EXPECT_EQ(expandEnv("a$$b", env), "a$b");
  EXPECT_EQ(expandEnv(escapeEnv("price $5 ${x}"), env), "price $5 ${x}");
}

TEST(EnvExpand, AnUnsetVariableIsRefusedByName) {
  try {
    expandEnv("runs/${SLURM_JOB_ID}", fakeEnv({}));
    FAIL() << "no error";
  } catch (const EnvExpandError& e) {
    EXPECT_EQ(e.variable(), "SLURM_JOB_ID");
    const std::string what = e.what();
    EXPECT_NE(what.find("environment variable SLURM_JOB_ID is not set"), std::string::npos) << what;
    EXPECT_NE(what.find("${SLURM_JOB_ID:-value}"), std::string::npos) << what;
  }
}

TEST(EnvExpand, MalformedPlaceholdersAreRefused) {
  const auto env = fakeEnv({{"SLURM_JOB_ID", "1"}});
  for (const char* bad :
       {"runs/$SLURM_JOB_ID", "runs/${SLURM_JOB_ID", "${}", "${1X}", "${A B}", "end$"}) {
    EXPECT_THROW(expandEnv(bad, env), EnvExpandError) << bad;
  }
}

}  // namespace
}  // namespace loom
