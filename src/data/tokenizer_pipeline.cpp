// The steps of TokenizerImpl::encodeText before BPE, in the `tokenizers` library's order:
// added tokens matched in the raw text (added_vocabulary.rs), normalization, added tokens
// matched in the normalized text, then the Split and ByteLevel pre-tokenizers
// (pre_tokenizers/{split,byte_level}.rs). Each word then goes to encodeWord (tokenizer_bpe.cpp).

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "tokenizer_impl.hpp"

namespace loom::detail {

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

}  // namespace loom::detail
