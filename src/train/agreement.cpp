#include "loom/train/agreement.hpp"

#include <nlohmann/json.hpp>

#include <sstream>

#include "loom/comm/world.hpp"
#include "loom/core/error.hpp"
#include "loom/core/hex.hpp"
#include "loom/core/strings.hpp"

namespace loom {

std::string identityHash(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ULL;
  return hex64(h);
}

namespace {

nlohmann::json toJson(const RankIdentity& r) {
  return {{"config", r.config_hash},
          {"data_file", r.data_file},
          {"data_index", r.data_index_hash},
          {"data_tokenizer", r.data_tokenizer_hash},
          {"model_config", r.model_config_hash},
          {"model_tokenizer", r.model_tokenizer_hash},
          {"resume_from", r.resume_from}};
}

/// What each compared field is, in a user's words.
const std::pair<const char*, const char*> kFields[] = {
    {"config", "the resolved config (hash)"},
    {"data_index", "data.train's index (hash of sample lengths and loss tokens)"},
    {"data_tokenizer", "the tokenizer data.train was prepared with"},
    {"model_config", "model.path/config.json (hash)"},
    {"model_tokenizer", "model.path/tokenizer.json"},
    {"resume_from", "the checkpoint to resume from"},
};

std::string shown(const nlohmann::json& j, const char* key) {
  const std::string v = j.at(key).get<std::string>();
  return v.empty() ? "(none)" : v;
}

}  // namespace

void checkRanksAgree(const World& world, const RankIdentity& mine) {
  nlohmann::json me = toJson(mine);
  me["host"] = world.host();
  const auto all = world.allGather(me.dump());
  std::vector<nlohmann::json> ranks;
  for (const auto& text : all) ranks.push_back(nlohmann::json::parse(text));
  std::ostringstream problems;
  int differing = 0;
  for (size_t r = 1; r < ranks.size(); ++r) {
    for (const auto& [key, what] : kFields) {
      if (ranks[r].at(key) == ranks[0].at(key)) continue;
      ++differing;
      // For the data, each rank's own path: node-local copies are the usual cause.
      const bool data = startsWith(key, "data_");
      auto side = [&](size_t k) {
        return "rank " + std::to_string(k) + " (host " + ranks[k]["host"].get<std::string>() + ")" +
               (data ? " reads " + ranks[k]["data_file"].get<std::string>() + ":" : "") + " " +
               shown(ranks[k], key);
      };
      problems << "\n  " << what << ": " << side(r) << "; " << side(0);
    }
  }
  LOOM_INPUT_CHECK(differing == 0,
                   "the ranks do not agree on what to train (each rank reads its own config, "
                   "data and model; use the same files on a shared filesystem):"
                       << problems.str());
}

void checkTokenizerMatches(const RankIdentity& mine, bool allowed, const std::string& where) {
  if (allowed || mine.data_tokenizer_hash.empty() || mine.model_tokenizer_hash.empty()) return;
  LOOM_INPUT_CHECK(mine.data_tokenizer_hash == mine.model_tokenizer_hash,
                   "data.train (" << where << "): " << mine.data_file
                                  << " was prepared with another tokenizer (hash "
                                  << mine.data_tokenizer_hash << ") than the model's (hash "
                                  << mine.model_tokenizer_hash
                                  << "): its token ids mean other text to this model. Prepare it "
                                     "again with `trainer prepare --tokenizer <model.path>`, or "
                                     "set data.allow_tokenizer_mismatch: true if the two "
                                     "tokenizers are known to agree");
}

}  // namespace loom
