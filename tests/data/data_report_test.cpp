// The data report's numbers against a fixture counted by hand (the comments show the counts).

#include "loom/data/data_report.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace loom {
namespace {

using Outcome = DataReport::Outcome;
using nlohmann::ordered_json;

TEST(DataReport, NumbersEqualAHandCountedFixture) {
  DataReport report(/*seq_len=*/10, {"a.jsonl", "b.jsonl"}, {0.25, 0.75});
  const std::vector<int32_t> ids1 = {1, 2, 3, 4};
  const std::vector<uint8_t> mask1 = {0, 0, 1, 1};  // prompt 2, answer 2
  const std::vector<int32_t> ids4 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const std::vector<uint8_t> mask4 = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1};  // prompt 4, answer 6
  const std::vector<int32_t> ids6 = {5, 6};
  const std::vector<uint8_t> mask6 = {1, 1};  // as stored position 0 is context: 1 + 1
  auto hash = [](const std::vector<int32_t>& i, const std::vector<uint8_t>& m) {
    return DataReport::sampleHash(0, i, m);
  };
  // a: kept; empty; kept again with the same sample (a duplicate).
  report.addRecord(0, Outcome::kKept, hash(ids1, mask1));
  report.addSample(0, false, ids1, mask1, 1);
  report.addRecord(0, Outcome::kEmpty, 0);
  report.addRecord(0, Outcome::kKept, hash(ids1, mask1));
  report.addSample(0, false, ids1, mask1, 1);
  // b: truncated and written twice (the mix repeats it); dropped; kept, to validation; and
  // three records left out of the mix.
  report.addRecord(1, Outcome::kTruncated, hash(ids4, mask4));
  report.addSample(1, false, ids4, mask4, 2);
  report.addRecord(1, Outcome::kDropped, 0);
  report.addRecord(1, Outcome::kKept, hash(ids6, mask6));
  report.addSample(1, true, ids6, mask6, 1);
  report.addNotInMix(1, 3);
  // A different mask is a different sample: not a duplicate.
  EXPECT_NE(hash(ids1, mask1), hash(ids1, {0, 1, 1, 1}));

  const ordered_json r = report.toJson({{"format", "chat"}}, "train.h5", "val.h5");
  const ordered_json records = {{"read", 9},      {"kept", 4},    {"empty", 1},
                                {"truncated", 1}, {"dropped", 1}, {"duplicates", 1},
                                {"not_in_mix", 3}};
  EXPECT_EQ(r["records"], records);
  // train: 4 samples (1 + 1 + 2 copies), tokens 4 + 4 + 2 * 10 = 28, loss 2 + 2 + 2 * 6 = 16.
  EXPECT_EQ(r["splits"]["train"]["samples"], 4);
  EXPECT_EQ(r["splits"]["train"]["tokens"], 28);
  EXPECT_EQ(r["splits"]["train"]["loss_tokens"], 16);
  EXPECT_DOUBLE_EQ(r["splits"]["train"]["loss_share"].get<double>(), 16.0 / 28.0);
  EXPECT_EQ(r["splits"]["val"]["samples"], 1);
  EXPECT_EQ(r["splits"]["val"]["loss_tokens"], 1);
  // Per sample copy: lengths 4, 4, 10, 10, 2; prompts 2, 2, 4, 4, 1; answers 2, 2, 6, 6, 1.
  // Nearest rank of 5 values: p50 = 3rd, p90 = p99 = 5th.
  const ordered_json sample = {{"mean", 6.0}, {"p50", 4}, {"p90", 10}, {"p99", 10}, {"max", 10}};
  const ordered_json prompt = {{"mean", 2.6}, {"p50", 2}, {"p90", 4}, {"p99", 4}, {"max", 4}};
  const ordered_json answer = {{"mean", 3.4}, {"p50", 2}, {"p90", 6}, {"p99", 6}, {"max", 6}};
  EXPECT_EQ(r["lengths"]["sample"], sample);
  EXPECT_EQ(r["lengths"]["prompt"], prompt);
  EXPECT_EQ(r["lengths"]["answer"], answer);
  // Bins of ceil(11 / 10) = 2: [0,2) [2,4) [4,6) [6,8) [8,10) [10,11).
  EXPECT_EQ(r["histogram"]["edges"], ordered_json({0, 2, 4, 6, 8, 10, 11}));
  EXPECT_EQ(r["histogram"]["counts"], ordered_json({0, 1, 2, 0, 0, 2}));
  ASSERT_EQ(r["sources"].size(), 2u);
  EXPECT_EQ(r["sources"][0]["records"], 3);
  EXPECT_EQ(r["sources"][0]["train"]["samples"], 2);
  EXPECT_EQ(r["sources"][0]["weight"], 0.25);
  EXPECT_EQ(r["sources"][1]["records"], 6);
  EXPECT_EQ(r["sources"][1]["not_in_mix"], 3);
  EXPECT_EQ(r["sources"][1]["train"]["tokens"], 20);
  EXPECT_EQ(r["sources"][1]["val"]["samples"], 1);

  const std::string table = DataReport::formatTable(r);
  EXPECT_NE(table.find("read 9, kept 4, empty 1, truncated 1, dropped 1, duplicates 1"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("not in mix 3"), std::string::npos) << table;
  EXPECT_NE(table.find("b.jsonl  weight 0.75"), std::string::npos) << table;
}

}  // namespace
}  // namespace loom
