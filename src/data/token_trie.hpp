#pragma once
// Byte trie over the tokenizer's added-token strings (not a public header).

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::detail {

/// Finds the leftmost, then longest, match like the `tokenizers` library's Aho-Corasick
/// automaton with MatchKind::LeftmostLongest.
class TokenTrie {
 public:
  TokenTrie() : nodes_(1) {}
  bool empty() const { return nodes_.size() == 1; }
  /// Adds `s` with `value` (>= 0); an empty `s` is ignored, a repeated one takes the new value.
  void insert(std::string_view s, int32_t value);
  /// The leftmost-longest match starting at or after `from`: sets [begin, end) and its value.
  bool find(std::string_view text, size_t from, size_t& begin, size_t& end, int32_t& value) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> edges;
    int32_t value = -1;
  };
  std::vector<Node> nodes_;
  std::array<bool, 256> first_{};
};

}  // namespace loom::detail
