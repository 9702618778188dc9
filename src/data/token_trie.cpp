#include "token_trie.hpp"

namespace loom::detail {

void TokenTrie::insert(std::string_view s, int32_t value) {
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

bool TokenTrie::find(std::string_view text, size_t from, size_t& begin, size_t& end,
                     int32_t& value) const {
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

}  // namespace loom::detail
