// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json. Each step mirrors the
// `tokenizers` library (added_vocabulary.rs, pre_tokenizers/{split,byte_level}.rs,
// models/bpe/{model,word}.rs) closely enough to give identical ids; the comments name the
// places where that required copying a quirk. This file is the public face; the work is in
// tokenizer_load.cpp (reading the file), tokenizer_pipeline.cpp (added tokens, normalization,
// pre-tokenization) and tokenizer_bpe.cpp (the merge).

#include "loom/data/tokenizer.hpp"

#include <utility>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/sha256.hpp"
#include "tokenizer_impl.hpp"

namespace loom {

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

const std::vector<int32_t>& Tokenizer::specialPrefix() const { return impl_->special_prefix; }
const std::vector<int32_t>& Tokenizer::specialSuffix() const { return impl_->special_suffix; }

const std::string& Tokenizer::contentHash() const { return impl_->hash; }

std::string Tokenizer::fileHash(const std::filesystem::path& dir) {
  const auto file = dir / "tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return "";
  return sha256Hex(readFileOrThrow(file, "tokenizer file"));
}

const std::filesystem::path& Tokenizer::path() const { return impl_->file; }

}  // namespace loom
