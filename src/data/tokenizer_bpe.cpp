// The BPE model of the tokenizer (models/bpe/{model,word}.rs of the `tokenizers` library):
// merging a word's bytes by rank, and the per-thread cache of merged words.

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>

#include "tokenizer_impl.hpp"

namespace loom::detail {

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

namespace {

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

}  // namespace

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

}  // namespace loom::detail
