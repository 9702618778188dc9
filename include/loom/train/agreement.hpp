#pragma once
// Agreement at start: before the first step, every rank proves it trains the same run. Each
// rank reads its own config, dataset index and model folder (node-local copies, a missing
// shared filesystem, an MPMD launch from other directories can make them differ); one
// all-gather compares what each read, and any difference ends every rank with a message
// naming the ranks, their hosts and what differs (exit 2), instead of a silently wrong plan.

#include <cstdint>
#include <string>
#include <vector>

namespace loom {

class World;

/// What one rank read, as hashes and names (nothing that legitimately differs per rank:
/// devices and dtypes are resolved per rank from the same config).
struct RankIdentity {
  std::string config_hash;           ///< of the resolved config
  std::string data_file;             ///< data.train as this rank opened it (for messages)
  std::string data_index_hash;       ///< the plan identity of data.train (lengths, loss tokens)
  std::string data_tokenizer_hash;   ///< the tokenizer data.train records having been made with
  std::string model_config_hash;     ///< of model.path/config.json
  std::string model_tokenizer_hash;  ///< of model.path/tokenizer.json (empty without one)
  std::string resume_from;           ///< the checkpoint this rank resumes from ("" = none)
};

/// A 16-hex-digit FNV-1a hash of `text` (for identities; not cryptographic).
std::string identityHash(const std::string& text);

/// Collective: every rank must call. Throws InputError on every rank when any rank's
/// identity differs from rank 0's, naming each differing rank (and host) and field.
void checkRanksAgree(const World& world, const RankIdentity& mine);

/// InputError when the dataset records a tokenizer and the model's differs, unless
/// `allowed` (data.allow_tokenizer_mismatch); `where` names the config key and its place.
void checkTokenizerMatches(const RankIdentity& mine, bool allowed, const std::string& where);

}  // namespace loom
