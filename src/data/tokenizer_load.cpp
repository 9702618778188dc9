// Loading a tokenizer.json into TokenizerImpl: the model's vocabulary and merges, the
// normalizer and pre-tokenizer steps, the added tokens, and tokenizer_config.json's special
// tokens. Every component Loom does not implement is refused here, by its JSON key.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <unordered_map>
#include <utility>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/sha256.hpp"
#include "loom/core/strings.hpp"
#include "loom/core/text_encoding.hpp"
#include "tokenizer_impl.hpp"

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

// Ids a post-processor puts around a single sequence, as the library's process() does with
// add_special_tokens=True (processors/{template,roberta,bert,sequence}.rs). A later processor
// of a Sequence wraps what the earlier ones added, so its ids go outside theirs.
void parsePostProcessor(const json& node, const std::string& key, const std::string& file,
                        const TokenizerImpl& impl, std::vector<int32_t>& prefix,
                        std::vector<int32_t>& suffix) {
  if (node.is_null()) return;
  LOOM_INPUT_CHECK(node.is_object() && node.contains("type"),
                   file << ": " << key << " must be an object with a \"type\"");
  const std::string type = node.at("type").get<std::string>();
  // The library does not check these ids; Loom does, since they end up in token files.
  auto vocabularyId = [&](const json& v, const std::string& where) {
    LOOM_INPUT_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 &&
                         v.get<int64_t>() < static_cast<int64_t>(impl.id_known.size()) &&
                         impl.id_known[v.get<size_t>()],
                     file << ": " << where << " is " << v.dump()
                          << "; expected the id of a token in the vocabulary");
    return v.get<int32_t>();
  };
  if (type == "ByteLevel") return;  // it trims offsets; ids are left alone
  if (type == "Sequence") {
    const json& list = requireKey(node, "processors", key, file);
    LOOM_INPUT_CHECK(list.is_array(), file << ": " << key << ".processors must be an array");
    for (size_t i = 0; i < list.size(); ++i) {
      parsePostProcessor(list[i], key + ".processors[" + std::to_string(i) + "]", file, impl,
                         prefix, suffix);
    }
    return;
  }
  std::vector<int32_t> before, after;
  if (type == "TemplateProcessing") {
    const json& single = requireKey(node, "single", key, file);
    const json& specials = requireKey(node, "special_tokens", key, file);
    LOOM_INPUT_CHECK(single.is_array(), file << ": " << key << ".single must be an array");
    LOOM_INPUT_CHECK(specials.is_object(),
                     file << ": " << key << ".special_tokens must be an object {name: token}");
    int sequences = 0;
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string item_key = key + ".single[" + std::to_string(i) + "]";
      const json& item = single[i];
      if (item.is_object() && item.contains("Sequence")) {
        ++sequences;
        continue;
      }
      LOOM_INPUT_CHECK(item.is_object() && item.contains("SpecialToken") &&
                           item.at("SpecialToken").is_object() &&
                           item.at("SpecialToken").contains("id") &&
                           item.at("SpecialToken").at("id").is_string(),
                       file << ": " << item_key
                            << " must be {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}");
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      LOOM_INPUT_CHECK(specials.contains(name), file << ": " << item_key << " names \"" << name
                                                     << "\", which " << key
                                                     << ".special_tokens does not define");
      const std::string token_key = key + ".special_tokens[\"" + name + "\"]";
      const json& ids = requireKey(specials.at(name), "ids", token_key, file);
      LOOM_INPUT_CHECK(ids.is_array(), file << ": " << token_key << ".ids must be an array");
      for (size_t j = 0; j < ids.size(); ++j) {
        (sequences == 0 ? before : after)
            .push_back(vocabularyId(ids[j], token_key + ".ids[" + std::to_string(j) + "]"));
      }
    }
    LOOM_INPUT_CHECK(sequences == 1, file << ": " << key << ".single has " << sequences
                                          << " {\"Sequence\": ...} items; expected one");
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    // A single sequence becomes cls + sequence + sep; each is a [token, id] pair.
    for (const char* part : {"cls", "sep"}) {
      const json& pair = requireKey(node, part, key, file);
      LOOM_INPUT_CHECK(pair.is_array() && pair.size() == 2 && pair[0].is_string(),
                       file << ": " << key << "." << part << " must be [token, id]");
      (std::string(part) == "cls" ? before : after)
          .push_back(vocabularyId(pair[1], key + "." + part + "[1]"));
    }
  } else {
    LOOM_INPUT_CHECK(false, file << ": " << key << ".type is \"" << type
                                 << "\"; supported: TemplateProcessing, RobertaProcessing, "
                                    "BertProcessing, ByteLevel, a Sequence of them, or null");
  }
  prefix.insert(prefix.begin(), before.begin(), before.end());
  suffix.insert(suffix.end(), after.begin(), after.end());
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
        if (startsWith(line, "#version")) continue;
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

    // --- post-processor (after the added tokens, whose ids it names) --------------------
    if (root.contains("post_processor")) {
      parsePostProcessor(root.at("post_processor"), "post_processor", f, *impl,
                         impl->special_prefix, impl->special_suffix);
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

}  // namespace detail
}  // namespace loom
