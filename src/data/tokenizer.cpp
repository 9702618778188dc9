// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json. Each step mirrors the
// `tokenizers` library (added_vocabulary.rs, pre_tokenizers/{split,byte_level}.rs,
// models/bpe/{model,word}.rs) closely enough to give identical ids; the comments name the
// places where that required copying a quirk.

#include "loom/data/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstring>
#include <functional>
#include <unordered_map>
#include <utility>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/text_encoding.hpp"
#include "tokenizer_text.hpp"

namespace loom {
namespace detail {

using nlohmann::json;

namespace {

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100.. in
// byte order, so that every byte has a visible, non-space character.
std::array<uint32_t, 256> byteToCodePoint() {
  std::array<uint32_t, 256> table{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) table[b] = direct[b] ? static_cast<uint32_t>(b) : next++;
  return table;
}

// The GPT-2 pre-tokenizer regex of the ByteLevel pre-tokenizer with use_regex=true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Regex-escapes a literal `Split` pattern ({"String": ...}), as the library's
// regex::escape does before compiling it.
std::string escapeLiteral(const std::string& s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out += '\\';
    out += c;
  }
  return out;
}

// Open-addressing map (left id, right id) -> (rank, merged id), the hot lookup of BPE.
class MergeTable {
 public:
  struct Value {
    uint32_t rank;
    int32_t id;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }
  // A later merge of the same pair replaces the earlier one, as the library's HashMap does.
  void insert(int32_t a, int32_t b, Value v) {
    const uint64_t key = pack(a, b);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty || slots_[i].key == key) {
        slots_[i] = Slot{key, v};
        return;
      }
    }
  }
  const Value* find(int32_t a, int32_t b) const {
    const uint64_t key = pack(a, b);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].value;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Value value{0, 0};
  };
  static uint64_t pack(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static size_t hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return static_cast<size_t>(key);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Byte trie over added-token strings; finds the leftmost, then longest, match like the
// library's Aho-Corasick automaton with MatchKind::LeftmostLongest.
class TokenTrie {
 public:
  TokenTrie() : nodes_(1) {}
  bool empty() const { return nodes_.size() == 1; }
  void insert(std::string_view s, int32_t value) {
    if (s.empty()) return;
    first_[static_cast<unsigned char>(s[0])] = true;
    int32_t node = 0;
    for (char c : s) {
      const auto b = static_cast<unsigned char>(c);
      int32_t child = -1;
      for (const auto& edge : nodes_[node].edges) {
        if (edge.first == b) child = edge.second;
      }
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_[node].edges.emplace_back(b, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[node].value = value;
  }
  bool find(std::string_view text, size_t from, size_t& begin, size_t& end, int32_t& value) const {
    for (size_t s = from; s < text.size(); ++s) {
      if (!first_[static_cast<unsigned char>(text[s])]) continue;
      int32_t node = 0;
      int32_t best = -1;
      size_t best_end = 0;
      for (size_t i = s; i < text.size(); ++i) {
        const auto b = static_cast<unsigned char>(text[i]);
        int32_t child = -1;
        for (const auto& edge : nodes_[node].edges) {
          if (edge.first == b) {
            child = edge.second;
            break;
          }
        }
        if (child < 0) break;
        node = child;
        if (nodes_[node].value >= 0) {
          best = nodes_[node].value;
          best_end = i + 1;
        }
      }
      if (best >= 0) {
        begin = s;
        end = best_end;
        value = best;
        return true;
      }
    }
    return false;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> edges;
    int32_t value = -1;
  };
  std::vector<Node> nodes_;
  std::array<bool, 256> first_{};
};

struct AddedToken {
  std::string content;
  std::string pattern;  // what is matched: content, or its normalized form when normalized
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// Per-thread word -> ids cache. One tokenizer owns it at a time (by instance number): a
// thread that switches tokenizers starts afresh, which keeps entries from ever mixing.
class WordCache {
 public:
  static constexpr size_t kMaxWordBytes = 256;  // longer words are not cached (as the library)

  void claim(uint64_t owner) {
    if (owner_ != owner) {
      owner_ = owner;
      clear();
    }
  }
  // A word's tokens: their ids and their lengths in bytes of the word. The lengths are kept
  // because they are not a function of the id (an id may stand for several strings).
  bool find(std::string_view word, size_t hash, const int32_t*& ids, const uint32_t*& lens,
            uint32_t& count) const {
    if (slots_.empty()) return false;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key_len == 0) return false;
      if (s.hash == hash && s.key_len == word.size() &&
          std::memcmp(keys_.data() + s.key_off, word.data(), word.size()) == 0) {
        ids = values_.data() + s.value_off;
        lens = lens_.data() + s.value_off;
        count = s.value_len;
        return true;
      }
    }
  }
  void insert(std::string_view word, size_t hash, const int32_t* ids, const uint32_t* lens,
              uint32_t count) {
    if (word.empty() || word.size() > kMaxWordBytes) return;
    if (slots_.empty() || used_ + 1 > kMaxEntries || keys_.size() + word.size() > kMaxKeyBytes) {
      // Full: start over rather than stop caching, so the cache follows the text it sees.
      clear();
      if (slots_.empty()) {
        slots_.assign(kSlots, Slot{});
        mask_ = kSlots - 1;
      }
    }
    size_t i = hash & mask_;
    while (slots_[i].key_len != 0) i = (i + 1) & mask_;
    Slot& s = slots_[i];
    s.hash = hash;
    s.key_off = static_cast<uint32_t>(keys_.size());
    s.key_len = static_cast<uint32_t>(word.size());
    s.value_off = static_cast<uint32_t>(values_.size());
    s.value_len = count;
    keys_.insert(keys_.end(), word.begin(), word.end());
    values_.insert(values_.end(), ids, ids + count);
    lens_.insert(lens_.end(), lens, lens + count);
    ++used_;
  }

 private:
  static constexpr size_t kSlots = size_t{1} << 18;
  static constexpr size_t kMaxEntries = kSlots / 2;
  static constexpr size_t kMaxKeyBytes = size_t{16} << 20;
  struct Slot {
    size_t hash = 0;
    uint32_t key_off = 0, key_len = 0, value_off = 0, value_len = 0;
  };
  void clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    values_.clear();
    lens_.clear();
    used_ = 0;
  }
  uint64_t owner_ = 0;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  std::vector<char> keys_;
  std::vector<int32_t> values_;
  std::vector<uint32_t> lens_;  // [values_.size()]
  size_t used_ = 0;
};

// Scratch buffers of one BPE merge, reused across words of a thread.
struct MergeScratch {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    uint32_t len;
  };
  struct Candidate {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::vector<int32_t> ids;
  std::vector<uint32_t> lens;
};

std::atomic<uint64_t> g_next_instance{1};

// Ids index dense per-id tables (and a model's embedding rows), so they are bounded: a corrupt
// id must not ask for gigabytes. The largest released vocabularies have about 260k entries.
constexpr int64_t kMaxTokenId = (int64_t{1} << 22) - 1;

const json& requireKey(const json& object, const char* key, const std::string& where,
                       const std::string& file) {
  LOOM_INPUT_CHECK(object.is_object() && object.contains(key),
                   file << ": missing key " << (where.empty() ? "" : where + ".") << key);
  return object.at(key);
}

bool boolOr(const json& object, const char* key, bool fallback) {
  if (!object.is_object() || !object.contains(key) || object.at(key).is_null()) return fallback;
  return object.at(key).get<bool>();
}

}  // namespace

struct TokenizerImpl {
  std::filesystem::path file;
  std::string hash;
  uint64_t instance = 0;

  // Normalizer: forms applied in order (empty = none).
  std::vector<NormalizationForm> normalizers;

  // Pre-tokenizers: Isolated splits in order; the ByteLevel prefix space is added to each
  // piece reaching level `prefix_level`; with use_regex the GPT-2 split is the last level.
  std::vector<std::unique_ptr<OnigCompatibleRegex>> splits;
  bool add_prefix_space = false;
  size_t prefix_level = 0;

  // Model.
  std::array<int32_t, 256> byte_id{};  // id of each byte's single-character token, -1 if none
  MergeTable merges;
  std::vector<std::string> model_raw;                       // raw bytes of each model token
  std::unordered_map<std::string_view, int32_t> raw_vocab;  // views into model_raw -> id
  bool ignore_merges = false;
  int32_t unk_id = -1;
  bool fuse_unk = false;

  // Added tokens.
  std::vector<AddedToken> added;
  TokenTrie raw_trie;         // normalized == false
  TokenTrie normalized_trie;  // normalized == true

  // Per id: vocabulary string, decoded bytes, raw length, special flag.
  std::vector<std::string> id_token;
  std::vector<std::string> id_bytes;
  std::vector<uint8_t> id_known;
  std::vector<uint8_t> id_special;
  std::unordered_map<std::string, int32_t> token_id;  // vocabulary string -> id

  std::optional<int32_t> eos, pad, bos;

  void encodeText(std::string_view text, std::vector<int32_t>& ids,
                  std::vector<size_t>* starts) const;

 private:
  template <typename Emit>
  void splitAddedTokens(std::string_view text, const TokenTrie& trie, Emit&& emit) const;
  void encodeNormalized(std::string_view piece, size_t base, std::vector<int32_t>& ids,
                        std::vector<size_t>* starts) const;
  void preTokenize(std::string_view piece, size_t level, size_t base, bool prefixed,
                   std::vector<int32_t>& ids, std::vector<size_t>* starts) const;
  void encodeWord(std::string_view word, size_t base, bool prefixed, std::vector<int32_t>& ids,
                  std::vector<size_t>* starts) const;
  void mergeWord(std::string_view word, MergeScratch& scratch) const;
};

// ---------------------------------------------------------------------------------------
// Loading.

namespace {

void parseNormalizer(const json& node, const std::string& key, const std::string& file,
                     std::vector<NormalizationForm>& out) {
  if (node.is_null()) return;
  LOOM_INPUT_CHECK(node.is_object() && node.contains("type"),
                   file << ": " << key << " must be an object with a \"type\"");
  const std::string type = node.at("type").get<std::string>();
  if (type == "NFC") {
    out.push_back(NormalizationForm::kNfc);
  } else if (type == "NFD") {
    out.push_back(NormalizationForm::kNfd);
  } else if (type == "NFKC") {
    out.push_back(NormalizationForm::kNfkc);
  } else if (type == "NFKD") {
    out.push_back(NormalizationForm::kNfkd);
  } else if (type == "Sequence") {
    const json& list = requireKey(node, "normalizers", key, file);
    for (size_t i = 0; i < list.size(); ++i) {
      parseNormalizer(list[i], key + ".normalizers[" + std::to_string(i) + "]", file, out);
    }
  } else {
    LOOM_INPUT_CHECK(false, file << ": " << key << ".type is \"" << type
                                 << "\"; supported: NFC, NFD, NFKC, NFKD, Sequence or null");
  }
}

void parsePreTokenizer(const json& node, const std::string& key, const std::string& file,
                       TokenizerImpl& impl, bool& saw_byte_level) {
  LOOM_INPUT_CHECK(node.is_object() && node.contains("type"),
                   file << ": " << key << " must be an object with a \"type\"");
  const std::string type = node.at("type").get<std::string>();
  LOOM_INPUT_CHECK(!saw_byte_level, file << ": " << key << ".type is \"" << type
                                         << "\" after the ByteLevel pre-tokenizer; only "
                                            "Split pre-tokenizers may come before ByteLevel");
  if (type == "Sequence") {
    const json& list = requireKey(node, "pretokenizers", key, file);
    for (size_t i = 0; i < list.size(); ++i) {
      parsePreTokenizer(list[i], key + ".pretokenizers[" + std::to_string(i) + "]", file, impl,
                        saw_byte_level);
    }
  } else if (type == "Split") {
    const json& pattern = requireKey(node, "pattern", key, file);
    std::string regex;
    if (pattern.is_object() && pattern.contains("Regex")) {
      regex = pattern.at("Regex").get<std::string>();
    } else if (pattern.is_object() && pattern.contains("String")) {
      regex = escapeLiteral(pattern.at("String").get<std::string>());
    } else {
      LOOM_INPUT_CHECK(false, file << ": " << key << ".pattern must be {\"Regex\": ...} or "
                                   << "{\"String\": ...}");
    }
    const std::string behavior = requireKey(node, "behavior", key, file).get<std::string>();
    LOOM_INPUT_CHECK(behavior == "Isolated", file << ": " << key << ".behavior is \"" << behavior
                                                  << "\"; only \"Isolated\" is supported");
    LOOM_INPUT_CHECK(!boolOr(node, "invert", false),
                     file << ": " << key << ".invert is true; only false is supported");
    impl.splits.push_back(std::make_unique<OnigCompatibleRegex>(regex, file + ": " + key));
  } else if (type == "ByteLevel") {
    saw_byte_level = true;
    impl.add_prefix_space = boolOr(node, "add_prefix_space", true);
    impl.prefix_level = impl.splits.size();
    if (boolOr(node, "use_regex", true)) {
      impl.splits.push_back(std::make_unique<OnigCompatibleRegex>(kGpt2Pattern, file));
    }
  } else {
    LOOM_INPUT_CHECK(false, file << ": " << key << ".type is \"" << type
                                 << "\"; supported: Split (Isolated), ByteLevel, Sequence of them");
  }
}

void checkDecoder(const json& node, const std::string& key, const std::string& file) {
  LOOM_INPUT_CHECK(node.is_object() && node.contains("type"),
                   file << ": " << key << " must be an object with a \"type\" (ByteLevel)");
  const std::string type = node.at("type").get<std::string>();
  if (type == "Sequence") {
    const json& list = requireKey(node, "decoders", key, file);
    for (size_t i = 0; i < list.size(); ++i) {
      checkDecoder(list[i], key + ".decoders[" + std::to_string(i) + "]", file);
    }
    return;
  }
  LOOM_INPUT_CHECK(type == "ByteLevel", file << ": " << key << ".type is \"" << type
                                             << "\"; only ByteLevel is supported");
}

// A token given in tokenizer_config.json: "text", {"content": "text"} or null.
std::optional<std::string> configToken(const json& config, const char* key,
                                       const std::string& file) {
  if (!config.contains(key) || config.at(key).is_null()) return std::nullopt;
  const json& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
    return v.at("content").get<std::string>();
  }
  LOOM_INPUT_CHECK(false, file << ": " << key
                               << " should be the token's text (a string, or an object with a "
                                  "string \"content\"), found "
                               << printableText(v.dump()));
  return std::nullopt;
}

}  // namespace

std::shared_ptr<TokenizerImpl> loadTokenizer(const std::filesystem::path& file,
                                             const std::filesystem::path* config_file) {
  const std::string bytes = readFileOrThrow(file, "tokenizer file");
  requireUtf8(std::string_view(bytes).substr(0, 8), file);  // a UTF-8 BOM is skipped by parse
  json root;
  try {
    root = json::parse(bytes);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double
    LOOM_INPUT_CHECK(false, file.string()
                                << ": malformed JSON (" << printableText(e.what()) << ")");
  }
  const std::string f = file.string();
  LOOM_INPUT_CHECK(root.is_object(), f << ": expected a JSON object at the top level");

  auto impl = std::make_shared<TokenizerImpl>();
  impl->file = file;
  impl->hash = sha256Hex(bytes);
  impl->instance = g_next_instance.fetch_add(1);
  try {
    // --- model -------------------------------------------------------------------------
    const json& model = requireKey(root, "model", "", f);
    const std::string type = model.value("type", std::string("BPE"));
    LOOM_INPUT_CHECK(type == "BPE",
                     f << ": model.type is \"" << type << "\"; only byte-level BPE is supported");
    if (model.contains("dropout") && !model.at("dropout").is_null()) {
      LOOM_INPUT_CHECK(model.at("dropout").get<double>() == 0.0, f << ": model.dropout is "
                                                                   << model.at("dropout").dump()
                                                                   << "; only null is supported");
    }
    LOOM_INPUT_CHECK(!boolOr(model, "byte_fallback", false),
                     f << ": model.byte_fallback is true; not supported (byte-level BPE only)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && !model.at(key).is_null()) {
        LOOM_INPUT_CHECK(model.at(key).get<std::string>().empty(),
                         f << ": model." << key << " is " << model.at(key).dump()
                           << "; only an empty string or null is supported");
      }
    }
    impl->ignore_merges = boolOr(model, "ignore_merges", false);
    impl->fuse_unk = boolOr(model, "fuse_unk", false);

    const json& vocab = requireKey(model, "vocab", "model", f);
    LOOM_INPUT_CHECK(vocab.is_object(), f << ": model.vocab must be an object {token: id}");
    const auto byte_cp = byteToCodePoint();
    std::unordered_map<uint32_t, int> cp_byte;
    for (int b = 0; b < 256; ++b) cp_byte[byte_cp[b]] = b;

    auto validId = [](const json& v) {
      return v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= kMaxTokenId;
    };
    int32_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      LOOM_INPUT_CHECK(validId(it.value()), f << ": model.vocab[\"" << it.key() << "\"] is "
                                              << it.value().dump() << "; ids are integers in [0, "
                                              << kMaxTokenId << "]");
      max_id = std::max(max_id, it.value().get<int32_t>());
    }
    const json& added_tokens = root.contains("added_tokens") && root.at("added_tokens").is_array()
                                   ? root.at("added_tokens")
                                   : json::array();
    for (size_t i = 0; i < added_tokens.size(); ++i) {
      const json& t = added_tokens[i];
      const std::string key = "added_tokens[" + std::to_string(i) + "]";
      LOOM_INPUT_CHECK(validId(requireKey(t, "id", key, f)),
                       f << ": " << key << ".id is " << t.at("id").dump()
                         << "; ids are integers in [0, " << kMaxTokenId << "]");
      max_id = std::max(max_id, t.at("id").get<int32_t>());
    }
    const size_t n_ids = static_cast<size_t>(max_id + 1);
    impl->id_token.assign(n_ids, std::string());
    impl->id_bytes.assign(n_ids, std::string());
    impl->id_known.assign(n_ids, 0);
    impl->id_special.assign(n_ids, 0);

    // The library's ByteLevel decoder: a token whose characters all belong to the byte
    // alphabet becomes those bytes; any other token is kept as its UTF-8 text.
    auto byteLevelBytes = [&](const std::string& token, std::string& out) {
      out.clear();
      size_t pos = 0;
      while (pos < token.size()) {
        const uint32_t cp = nextCodePoint(token, pos);
        auto found = cp_byte.find(cp);
        if (found == cp_byte.end()) return false;
        out += static_cast<char>(found->second);
      }
      return true;
    };
    auto decodeBytes = [&](const std::string& token) {
      std::string out;
      return byteLevelBytes(token, out) ? out : token;
    };

    impl->model_raw.reserve(vocab.size());
    impl->token_id.reserve(vocab.size() + added_tokens.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const auto id = it.value().get<int32_t>();
      const std::string& token = it.key();
      impl->id_token[id] = token;
      impl->id_bytes[id] = decodeBytes(token);
      impl->id_known[id] = 1;
      impl->token_id[token] = id;
    }
    // Only tokens written wholly in the byte alphabet can equal a word (ignore_merges).
    std::vector<int32_t> raw_ids;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      std::string raw;
      if (!byteLevelBytes(it.key(), raw)) continue;
      impl->model_raw.push_back(std::move(raw));
      raw_ids.push_back(it.value().get<int32_t>());
    }
    // Views are taken once model_raw has stopped growing.
    impl->raw_vocab.reserve(impl->model_raw.size());
    for (size_t k = 0; k < raw_ids.size(); ++k) impl->raw_vocab[impl->model_raw[k]] = raw_ids[k];
    for (int b = 0; b < 256; ++b) {
      std::string s;
      appendUtf8(s, byte_cp[b]);
      auto found = impl->token_id.find(s);
      impl->byte_id[b] = found == impl->token_id.end() ? -1 : found->second;
    }
    if (model.contains("unk_token") && model.at("unk_token").is_string()) {
      const std::string unk = model.at("unk_token").get<std::string>();
      auto found = impl->token_id.find(unk);
      LOOM_INPUT_CHECK(found != impl->token_id.end(),
                       f << ": model.unk_token \"" << unk << "\" is not in model.vocab");
      impl->unk_id = found->second;
    }

    const json& merges = requireKey(model, "merges", "model", f);
    LOOM_INPUT_CHECK(merges.is_array(), f << ": model.merges must be an array");
    impl->merges.reserve(merges.size());
    uint32_t rank = 0;
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& m = merges[i];
      std::string a, b;
      if (m.is_string()) {
        const std::string line = m.get<std::string>();
        // Legacy "a b" form; "#version" lines are comments and take no rank.
        if (line.rfind("#version", 0) == 0) continue;
        const size_t space = line.find(' ');
        LOOM_INPUT_CHECK(
            space != std::string::npos && line.find(' ', space + 1) == std::string::npos,
            f << ": model.merges[" << i << "] is \"" << line
              << "\"; expected two tokens separated by one space");
        a = line.substr(0, space);
        b = line.substr(space + 1);
      } else {
        LOOM_INPUT_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                         f << ": model.merges[" << i << "] must be \"a b\" or [\"a\", \"b\"]");
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      }
      auto ia = impl->token_id.find(a);
      auto ib = impl->token_id.find(b);
      auto iab = impl->token_id.find(a + b);
      LOOM_INPUT_CHECK(
          ia != impl->token_id.end() && ib != impl->token_id.end() && iab != impl->token_id.end(),
          f << ": model.merges[" << i << "] (\"" << a << "\", \"" << b
            << "\") uses a token missing from model.vocab");
      impl->merges.insert(ia->second, ib->second, {rank++, iab->second});
    }

    // --- normalizer, pre-tokenizer, decoder ----------------------------------------------
    if (root.contains("normalizer")) {
      parseNormalizer(root.at("normalizer"), "normalizer", f, impl->normalizers);
    }
    bool saw_byte_level = false;
    if (root.contains("pre_tokenizer") && !root.at("pre_tokenizer").is_null()) {
      parsePreTokenizer(root.at("pre_tokenizer"), "pre_tokenizer", f, *impl, saw_byte_level);
    }
    LOOM_INPUT_CHECK(saw_byte_level, f << ": pre_tokenizer has no ByteLevel step; only "
                                          "byte-level BPE tokenizers are supported");
    if (root.contains("decoder") && !root.at("decoder").is_null()) {
      checkDecoder(root.at("decoder"), "decoder", f);
    }

    // --- added tokens ------------------------------------------------------------------
    for (size_t i = 0; i < added_tokens.size(); ++i) {
      const json& t = added_tokens[i];
      const std::string key = "added_tokens[" + std::to_string(i) + "]";
      AddedToken tok;
      LOOM_INPUT_CHECK(requireKey(t, "content", key, f).is_string(),
                       f << ": " << key << ".content must be a string");
      tok.content = t.at("content").get<std::string>();
      if (tok.content.empty()) continue;
      tok.special = boolOr(t, "special", false);
      tok.single_word = boolOr(t, "single_word", false);
      tok.lstrip = boolOr(t, "lstrip", false);
      tok.rstrip = boolOr(t, "rstrip", false);
      tok.normalized = boolOr(t, "normalized", !tok.special);
      // The library keeps a content's model-vocabulary id when it has one.
      auto in_vocab = impl->token_id.find(tok.content);
      tok.id = in_vocab != impl->token_id.end() && impl->id_known[in_vocab->second] &&
                       impl->id_token[in_vocab->second] == tok.content
                   ? in_vocab->second
                   : t.at("id").get<int32_t>();
      // The library gives an added token whose id already names another token a new id (with
      // a warning), so a file like that cannot give the library's ids.
      LOOM_INPUT_CHECK(!impl->id_known[tok.id] || impl->id_token[tok.id] == tok.content,
                       f << ": " << key << " \"" << tok.content << "\" has id " << tok.id
                         << ", which is already the id of \"" << impl->id_token[tok.id]
                         << "\"; every id must name one token");
      tok.pattern = tok.content;
      if (tok.normalized) {
        for (auto form : impl->normalizers) {
          std::string out;
          if (normalizeUtf8(tok.pattern, form, out)) tok.pattern = out;
        }
      }
      impl->id_token[tok.id] = tok.content;
      impl->id_bytes[tok.id] = decodeBytes(tok.pattern);
      impl->id_known[tok.id] = 1;
      impl->id_special[tok.id] = tok.special ? 1 : 0;
      impl->token_id[tok.content] = tok.id;
      const auto index = static_cast<int32_t>(impl->added.size());
      (tok.normalized ? impl->normalized_trie : impl->raw_trie).insert(tok.pattern, index);
      impl->added.push_back(std::move(tok));
    }
  } catch (const json::exception& e) {
    // A value of the wrong JSON type somewhere above (e.g. a number where a string goes).
    LOOM_INPUT_CHECK(false, f << ": unexpected JSON value (" << e.what() << ")");
  }

  if (config_file && std::filesystem::exists(*config_file)) {
    const std::string cfg_text = readUtf8TextFile(*config_file, "tokenizer config");
    json cfg;
    try {
      cfg = json::parse(cfg_text);
    } catch (const json::exception& e) {
      LOOM_INPUT_CHECK(false, config_file->string()
                                  << ": malformed JSON (" << printableText(e.what()) << ")");
    }
    LOOM_INPUT_CHECK(cfg.is_object(), config_file->string()
                                          << ": expected a JSON object at the top level");
    auto lookup = [&](const char* key) -> std::optional<int32_t> {
      auto token = configToken(cfg, key, config_file->string());
      if (!token) return std::nullopt;
      auto found = impl->token_id.find(*token);
      // transformers would add such a token with a new id the model has no embedding for;
      // Loom refuses it by name (a tokenizer_config.json edited or copied from another model).
      LOOM_INPUT_CHECK(found != impl->token_id.end(),
                       config_file->string()
                           << ": " << key << " '" << printableText(*token)
                           << "' is not in the vocabulary of " << file.string()
                           << " (neither a token of its model nor an added token)");
      return found->second;
    };
    impl->eos = lookup("eos_token");
    impl->pad = lookup("pad_token");
    impl->bos = lookup("bos_token");
  }
  return impl;
}

// ---------------------------------------------------------------------------------------
// Encoding.

template <typename Emit>
void TokenizerImpl::splitAddedTokens(std::string_view text, const TokenTrie& trie,
                                     Emit&& emit) const {
  // emit(begin, end, added index or -1). Mirrors AddedVocabulary::find_matches, including
  // that the automaton resumes after a match's own end even when rstrip took more.
  if (trie.empty()) {
    emit(size_t{0}, text.size(), -1);
    return;
  }
  size_t start_offset = 0;
  size_t from = 0;
  size_t begin = 0, end = 0;
  int32_t index = -1;
  while (from < text.size() && trie.find(text, from, begin, end, index)) {
    from = end;
    const AddedToken& tok = added[index];
    if (tok.single_word) {
      const bool start_space = begin == 0 || !isWordChar(previousCodePoint(text, begin));
      size_t p = end;
      const bool stop_space = end == text.size() || !isWordChar(nextCodePoint(text, p));
      if (!start_space || !stop_space) continue;
    }
    size_t start = begin;
    size_t stop = end;
    if (tok.lstrip) {
      size_t s = begin;
      while (s > 0) {
        size_t prev = s - 1;
        while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
        size_t p = prev;
        if (!isUnicodeSpace(nextCodePoint(text, p))) break;
        s = prev;
      }
      start = std::max(s, start_offset);
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t p = stop;
        if (!isUnicodeSpace(nextCodePoint(text, p))) break;
        stop = p;
      }
    }
    if (start_offset < start) emit(start_offset, start, int32_t{-1});
    emit(start, stop, index);
    start_offset = stop;
  }
  if (start_offset < text.size()) emit(start_offset, text.size(), int32_t{-1});
}

void TokenizerImpl::encodeText(std::string_view text, std::vector<int32_t>& ids,
                               std::vector<size_t>* starts) const {
  splitAddedTokens(text, raw_trie, [&](size_t begin, size_t end, int32_t index) {
    if (index >= 0) {
      ids.push_back(added[index].id);
      if (starts) starts->push_back(begin);
      return;
    }
    const std::string_view piece = text.substr(begin, end - begin);
    if (normalizers.empty()) {
      encodeNormalized(piece, begin, ids, starts);
      return;
    }
    std::string normalized;
    bool changed = false;
    for (auto form : normalizers) {
      std::string out;
      if (normalizeUtf8(changed ? std::string_view(normalized) : piece, form, out)) {
        normalized = std::move(out);
        changed = true;
      }
    }
    if (!changed) {
      encodeNormalized(piece, begin, ids, starts);
      return;
    }
    const size_t first = ids.size();
    encodeNormalized(normalized, 0, ids, starts);
    if (!starts) return;
    // Map offsets in the normalized piece back into the original: exact within the common
    // prefix and suffix, the rest pinned to the end of the prefix.
    size_t prefix = 0;
    while (prefix < piece.size() && prefix < normalized.size() &&
           piece[prefix] == normalized[prefix]) {
      ++prefix;
    }
    size_t suffix = 0;
    while (suffix < piece.size() - prefix && suffix < normalized.size() - prefix &&
           piece[piece.size() - 1 - suffix] == normalized[normalized.size() - 1 - suffix]) {
      ++suffix;
    }
    for (size_t i = first; i < starts->size(); ++i) {
      size_t& off = (*starts)[i];
      if (off < prefix) {
        off = begin + off;
      } else if (off >= normalized.size() - suffix) {
        off = begin + piece.size() - (normalized.size() - off);
      } else {
        off = begin + prefix;
      }
    }
  });
}

void TokenizerImpl::encodeNormalized(std::string_view piece, size_t base, std::vector<int32_t>& ids,
                                     std::vector<size_t>* starts) const {
  splitAddedTokens(piece, normalized_trie, [&](size_t begin, size_t end, int32_t index) {
    if (index >= 0) {
      ids.push_back(added[index].id);
      if (starts) starts->push_back(base + begin);
      return;
    }
    preTokenize(piece.substr(begin, end - begin), 0, base + begin, false, ids, starts);
  });
}

void TokenizerImpl::preTokenize(std::string_view piece, size_t level, size_t base, bool prefixed,
                                std::vector<int32_t>& ids, std::vector<size_t>* starts) const {
  if (piece.empty()) return;
  if (level == prefix_level && add_prefix_space && piece[0] != ' ') {
    // The ByteLevel prefix space has no place in the input; its offset is the piece's start.
    const std::string with_space = " " + std::string(piece);
    preTokenize(with_space, level, base, true, ids, starts);
    return;
  }
  if (level == splits.size()) {
    encodeWord(piece, base, prefixed, ids, starts);
    return;
  }
  const OnigCompatibleRegex& re = *splits[level];
  // Oniguruma's find_iter: an empty match right after the previous match is skipped by one
  // character; pieces between matches are kept (Isolated), empty pieces dropped.
  size_t prev = 0;
  size_t search = 0;
  std::optional<size_t> last_match_end;
  auto sub = [&](size_t b, size_t e) {
    if (e <= b) return;
    const bool shifted = prefixed && b == 0;
    const size_t abs = prefixed ? base + (b == 0 ? 0 : b - 1) : base + b;
    preTokenize(piece.substr(b, e - b), level + 1, abs, shifted, ids, starts);
  };
  while (search <= piece.size()) {
    size_t mb = 0, me = 0;
    if (!re.find(piece, search, mb, me)) break;
    if (mb == me && last_match_end && *last_match_end == me) {
      size_t p = me;
      if (p < piece.size()) {
        nextCodePoint(piece, p);
        search = p;
      } else {
        search = piece.size() + 1;
      }
      continue;
    }
    search = me;
    last_match_end = me;
    sub(prev, mb);
    sub(mb, me);
    prev = me;
    if (mb == me) {
      // Step over the empty match so the next search makes progress.
      size_t p = me;
      if (p >= piece.size()) break;
      nextCodePoint(piece, p);
      search = p;
    }
  }
  sub(prev, piece.size());
}

void TokenizerImpl::mergeWord(std::string_view word, MergeScratch& s) const {
  // models/bpe/model.rs merge_word + word.rs merge_all: symbols start as single bytes; the
  // lowest (rank, position) candidate merges first; stale candidates are recognised by the
  // pair no longer producing the same id, exactly as the library checks.
  s.symbols.clear();
  s.heap.clear();
  int32_t unk = -1;
  uint32_t unk_len = 0;
  auto push_symbol = [&](int32_t id, uint32_t len) {
    const auto index = static_cast<int32_t>(s.symbols.size());
    if (index > 0) s.symbols.back().next = index;
    s.symbols.push_back({id, index - 1, -1, len});
  };
  for (char c : word) {
    const int32_t id = byte_id[static_cast<unsigned char>(c)];
    if (id >= 0) {
      if (unk >= 0) {
        push_symbol(unk, unk_len);
        unk = -1;
      }
      push_symbol(id, 1);
    } else if (unk_id >= 0) {
      if (unk >= 0 && fuse_unk) {
        unk_len += 1;
      } else {
        if (unk >= 0) push_symbol(unk, unk_len);
        unk = unk_id;
        unk_len = 1;
      }
    }
  }
  if (unk >= 0) push_symbol(unk, unk_len);

  auto greater = [](const MergeScratch::Candidate& x, const MergeScratch::Candidate& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  for (size_t i = 0; i + 1 < s.symbols.size(); ++i) {
    if (const auto* m = merges.find(s.symbols[i].id, s.symbols[i + 1].id)) {
      s.heap.push_back({m->rank, static_cast<uint32_t>(i), m->id});
    }
  }
  std::make_heap(s.heap.begin(), s.heap.end(), greater);
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), greater);
    const MergeScratch::Candidate top = s.heap.back();
    s.heap.pop_back();
    auto& cur = s.symbols[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const auto right = s.symbols[next_pos];
    const auto* m = merges.find(cur.id, right.id);
    if (!m || m->id != top.new_id) continue;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    s.symbols[next_pos].len = 0;
    if (right.next >= 0) s.symbols[right.next].prev = static_cast<int32_t>(top.pos);
    if (cur.prev >= 0) {
      if (const auto* pm = merges.find(s.symbols[cur.prev].id, cur.id)) {
        s.heap.push_back({pm->rank, static_cast<uint32_t>(cur.prev), pm->id});
        std::push_heap(s.heap.begin(), s.heap.end(), greater);
      }
    }
    if (cur.next >= 0) {
      if (const auto* nm = merges.find(cur.id, s.symbols[cur.next].id)) {
        s.heap.push_back({nm->rank, top.pos, nm->id});
        std::push_heap(s.heap.begin(), s.heap.end(), greater);
      }
    }
  }
  s.ids.clear();
  s.lens.clear();
  for (const auto& sym : s.symbols) {
    if (sym.len == 0) continue;
    s.ids.push_back(sym.id);
    s.lens.push_back(sym.len);
  }
}

void TokenizerImpl::encodeWord(std::string_view word, size_t base, bool prefixed,
                               std::vector<int32_t>& ids, std::vector<size_t>* starts) const {
  // Offsets of a word that starts with the ByteLevel prefix space: the space maps to `base`,
  // the rest one byte earlier than their position in the word.
  auto push_start = [&](size_t offset_in_word) {
    if (!starts) return;
    starts->push_back(prefixed ? base + (offset_in_word == 0 ? 0 : offset_in_word - 1)
                               : base + offset_in_word);
  };
  if (ignore_merges) {
    // Llama 3: a word that is itself a vocabulary entry is taken whole.
    auto found = raw_vocab.find(word);
    if (found != raw_vocab.end()) {
      ids.push_back(found->second);
      push_start(0);
      return;
    }
  }
  thread_local WordCache cache;
  thread_local MergeScratch scratch;
  cache.claim(instance);
  const size_t hash = std::hash<std::string_view>{}(word);
  const int32_t* cached = nullptr;
  const uint32_t* cached_lens = nullptr;
  uint32_t count = 0;
  if (cache.find(word, hash, cached, cached_lens, count)) {
    size_t offset = 0;
    for (uint32_t i = 0; i < count; ++i) {
      ids.push_back(cached[i]);
      if (starts) {
        push_start(offset);
        offset += cached_lens[i];
      }
    }
    return;
  }
  mergeWord(word, scratch);
  size_t offset = 0;
  for (size_t i = 0; i < scratch.ids.size(); ++i) {
    ids.push_back(scratch.ids[i]);
    push_start(offset);
    offset += scratch.lens[i];
  }
  cache.insert(word, hash, scratch.ids.data(), scratch.lens.data(),
               static_cast<uint32_t>(scratch.ids.size()));
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Public face.

Tokenizer::Tokenizer(std::shared_ptr<const detail::TokenizerImpl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::fromFile(const std::filesystem::path& tokenizer_json) {
  return Tokenizer(detail::loadTokenizer(tokenizer_json, nullptr));
}

Tokenizer Tokenizer::fromDir(const std::filesystem::path& dir) {
  const auto config = dir / "tokenizer_config.json";
  return Tokenizer(detail::loadTokenizer(dir / "tokenizer.json", &config));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  encode(text, ids, nullptr);
  return ids;
}

void Tokenizer::encode(std::string_view text, std::vector<int32_t>& ids,
                       std::vector<size_t>* starts) const {
  size_t bad = 0;
  LOOM_INPUT_CHECK(isValidUtf8(text, &bad),
                   "text to tokenize is not valid UTF-8 (byte offset " << bad << ")");
  impl_->encodeText(text, ids, starts);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_known.size() || !impl_->id_known[id]) {
      continue;
    }
    if (skip_special && impl_->id_special[id]) continue;
    bytes += impl_->id_bytes[id];
  }
  return toValidUtf8(bytes);
}

std::optional<int32_t> Tokenizer::tokenToId(std::string_view token) const {
  auto found = impl_->token_id.find(std::string(token));
  if (found == impl_->token_id.end()) return std::nullopt;
  return found->second;
}

std::string Tokenizer::idToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_known.size() || !impl_->id_known[id]) {
    return {};
  }
  return impl_->id_token[id];
}

bool Tokenizer::isSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_special.size() && impl_->id_special[id];
}

int32_t Tokenizer::vocabSize() const { return static_cast<int32_t>(impl_->id_known.size()); }

std::optional<int32_t> Tokenizer::eosId() const { return impl_->eos; }
std::optional<int32_t> Tokenizer::padId() const { return impl_->pad; }
std::optional<int32_t> Tokenizer::bosId() const { return impl_->bos; }

const std::string& Tokenizer::contentHash() const { return impl_->hash; }

std::string Tokenizer::fileHash(const std::filesystem::path& dir) {
  const auto file = dir / "tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return "";
  return detail::sha256Hex(readFileOrThrow(file, "tokenizer file"));
}

const std::filesystem::path& Tokenizer::path() const { return impl_->file; }

}  // namespace loom
