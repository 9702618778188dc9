#include "loom/model/generate.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <limits>

#include "loom/core/error.hpp"
#include "loom/model/decoder.hpp"

namespace loom {
namespace {

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// The last position's logits of each row, in fp32: [B, V].
at::Tensor lastLogits(CausalLm& model, DecoderInput& input) {
  const at::Tensor hidden = model.hidden(input);  // [B, T, H]
  return model.logits(hidden.select(1, hidden.size(1) - 1)).to(at::kFloat);
}

}  // namespace

void SamplingSettings::validate() const {
  LOOM_INPUT_CHECK(max_new_tokens > 0,
                   "--max-new-tokens: expected a positive number, got " << max_new_tokens);
  LOOM_INPUT_CHECK(std::isfinite(temperature) && temperature >= 0,
                   "--temperature: expected 0 (greedy) or a positive number, got " << temperature);
  LOOM_INPUT_CHECK(top_k >= 0, "--top-k: expected 0 (off) or a positive number, got " << top_k);
  LOOM_INPUT_CHECK(std::isfinite(top_p) && top_p > 0 && top_p <= 1,
                   "--top-p: expected a number in (0, 1], got " << top_p);
  LOOM_INPUT_CHECK(
      std::isfinite(repetition_penalty) && repetition_penalty > 0,
      "--repetition-penalty: expected a positive number (1 = off), got " << repetition_penalty);
}

at::Tensor processLogits(const at::Tensor& logits, const at::Tensor& sequences,
                         const SamplingSettings& s) {
  at::Tensor scores = logits;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (s.repetition_penalty != 1.0) {
    // RepetitionPenaltyLogitsProcessor: every id in the sequence, once.
    const at::Tensor ids = sequences.to(scores.device(), at::kLong);
    at::Tensor seen = scores.gather(1, ids);
    seen = at::where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty);
    scores = scores.scatter(1, ids, seen);
  }
  if (s.temperature <= 0) return scores;  // greedy: no warpers
  scores = scores / s.temperature;
  if (s.top_k > 0) {
    // TopKLogitsWarper: below the k-th largest score is removed (ties at it are kept).
    const int64_t k = std::min<int64_t>(s.top_k, scores.size(-1));
    const at::Tensor kth = std::get<0>(scores.topk(k, -1)).select(-1, k - 1).unsqueeze(-1);
    scores = scores.masked_fill(scores < kth, neg_inf);
  }
  if (s.top_p < 1.0) {
    // TopPLogitsWarper: ascending sort; drop the low tail whose mass is <= 1 - top_p, keeping
    // at least the most likely token.
    auto [sorted, order] = scores.sort(/*dim=*/-1, /*descending=*/false);
    const at::Tensor cumulative = sorted.softmax(-1).cumsum(-1);
    at::Tensor remove_sorted = cumulative <= (1.0 - s.top_p);
    remove_sorted.select(-1, remove_sorted.size(-1) - 1).fill_(false);
    const at::Tensor remove = remove_sorted.scatter(1, order, remove_sorted);
    scores = scores.masked_fill(remove, neg_inf);
  }
  return scores;
}

std::vector<Generated> generate(CausalLm& model, const std::vector<std::vector<int64_t>>& prompts,
                                const SamplingSettings& settings, int64_t pad_id,
                                GenerationStats* stats, const TokenCallback& on_token) {
  settings.validate();
  LOOM_CHECK(!prompts.empty(), "generate: no prompts");
  at::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.options().device;
  const auto longs = at::TensorOptions().dtype(at::kLong);
  const auto rows = static_cast<int64_t>(prompts.size());
  int64_t width = 0;
  for (const auto& p : prompts) {
    LOOM_CHECK(!p.empty(), "generate: an empty prompt");
    width = std::max<int64_t>(width, static_cast<int64_t>(p.size()));
  }
  // Left padding, as transformers generates a batch: every row's next token is at the end.
  at::Tensor tokens = at::full({rows, width}, pad_id, longs);
  at::Tensor real = at::zeros({rows, width}, longs);
  int64_t prompt_tokens = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const auto& p = prompts[static_cast<size_t>(r)];
    const auto n = static_cast<int64_t>(p.size());
    tokens[r].slice(0, width - n).copy_(at::tensor(p, longs));
    real[r].slice(0, width - n).fill_(1);
    prompt_tokens += n;
  }
  // transformers' positions: the count of real tokens before, padding at 1.
  at::Tensor positions = (real.cumsum(1) - 1).masked_fill(real == 0, 1);
  at::Tensor sequences = tokens.clone();  // [B, L] on the CPU, padding included

  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(settings.seed);
  std::vector<Generated> out(prompts.size());
  std::vector<bool> done(prompts.size(), false);
  auto stopping = [&](int64_t id) {
    for (int64_t s : settings.stop_ids) {
      if (s == id) return true;
    }
    return false;
  };

  KvCache cache;
  DecoderInput input;
  input.tokens = tokens.to(device);
  input.positions = positions.to(device);
  input.real = real.to(device, at::kBool);
  input.cache = &cache;
  at::Tensor next_positions = real.sum(1);  // [B]: the place of each row's next token
  auto start = std::chrono::steady_clock::now();
  at::Tensor logits = lastLogits(model, input);
  double prefill_s = 0;
  int64_t new_tokens = 0;
  for (int64_t step = 0; step < settings.max_new_tokens; ++step) {
    const at::Tensor scores = processLogits(logits, sequences, settings);
    at::Tensor next;
    if (settings.temperature <= 0) {
      next = scores.argmax(-1);
    } else {
      const at::Tensor probs = scores.softmax(-1).to(at::kCPU);
      next = at::multinomial(probs, 1, /*replacement=*/false, generator).squeeze(1);
    }
    next = next.to(at::kCPU, at::kLong);
    if (step == 0) prefill_s = secondsSince(start), start = std::chrono::steady_clock::now();
    auto* ids = next.data_ptr<int64_t>();
    bool all_done = true;
    for (int64_t r = 0; r < rows; ++r) {
      const auto row = static_cast<size_t>(r);
      if (done[row]) {
        ids[r] = pad_id;  // finished rows are fed padding, as transformers does
        continue;
      }
      out[row].tokens.push_back(ids[r]);
      ++new_tokens;
      if (stopping(ids[r])) {
        done[row] = true;
        out[row].finish_reason = "stop";
      } else if (on_token && on_token(row, ids[r])) {
        done[row] = true;
        out[row].finish_reason = "stop_string";
      }
      all_done = all_done && done[row];
    }
    sequences = at::cat({sequences, next.unsqueeze(1)}, 1);
    if (all_done || step + 1 == settings.max_new_tokens) break;
    input.tokens = next.unsqueeze(1).to(device);
    input.positions = next_positions.unsqueeze(1).to(device);
    input.real = at::ones({rows, 1}, at::TensorOptions().dtype(at::kBool).device(device));
    next_positions = next_positions + 1;
    logits = lastLogits(model, input);
  }
  for (auto& g : out) {
    if (g.finish_reason.empty()) g.finish_reason = "length";
  }
  if (stats) {
    stats->prompt_tokens = prompt_tokens;
    stats->new_tokens = new_tokens;
    stats->prefill_s = prefill_s;
    stats->decode_s = secondsSince(start);
  }
  if (was_training) model.train();
  return out;
}

}  // namespace loom
