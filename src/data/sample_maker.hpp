#pragma once
// `trainer prepare`'s middle stage: one record as read -> the samples it makes (token ids and
// loss mask), per the format's rules in prepare.hpp. Safe to call from many threads.

#include <cstdint>
#include <exception>
#include <optional>
#include <vector>

#include "field_template.hpp"
#include "loom/data/chat_renderer.hpp"
#include "loom/data/conversation.hpp"
#include "loom/data/prepare.hpp"
#include "record_reader.hpp"

namespace loom {
class Tokenizer;
}  // namespace loom

namespace loom::detail {

struct Piece {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
};

enum class RecordStatus { kOk, kEmpty, kTruncated, kDropped };

struct RecordResult {
  std::vector<Piece> pieces;
  RecordStatus status = RecordStatus::kOk;
  std::exception_ptr error;
  // Where the samples go, from the record (RawRecord): its source, split and copies.
  size_t source = 0;
  bool validation = false;
  int64_t copies = 1;
};

/// What the formats need besides the options: the tokenizer's special ids, the chat renderer
/// (chat-shaped formats) and the parsed field templates (--format template).
struct SampleRecipe {
  std::optional<int32_t> eos;
  std::vector<int32_t> prefix;  ///< what the tokenizer's post-processor puts first (BOS)
  std::vector<int32_t> suffix;  ///< ... and last
  std::optional<ChatRenderer> renderer;
  std::vector<TemplatePart> prompt;
  std::vector<TemplatePart> completion;
};

class SampleMaker {
 public:
  SampleMaker(const Tokenizer& tokenizer, const PrepareOptions& options, SampleRecipe recipe);

  /// The samples of `raw`; errors (with the record's place) are returned, not thrown.
  RecordResult make(const RawRecord& raw) const;

 private:
  void makeInto(const RawRecord& raw, RecordResult& result) const;
  void makeText(const std::string& text, RecordResult& result) const;
  void makeChat(nlohmann::ordered_json messages, RecordResult& result) const;
  void makeTemplate(const nlohmann::ordered_json& record, const std::string& where,
                    RecordResult& result) const;
  void appendEnd(std::vector<int32_t>& ids) const;
  void addSample(std::vector<int32_t> ids, std::vector<uint8_t> mask, RecordResult& result) const;

  const Tokenizer& tokenizer_;
  const PrepareOptions& options_;
  SampleRecipe recipe_;
};

}  // namespace loom::detail
