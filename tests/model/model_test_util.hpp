#pragma once
// Shared by the model test suites: tolerance measures, a tiny config, an InputError matcher
// and the padded-batch plumbing of the Python reference files (model_reference.py).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/hf_config.hpp"

namespace loom::testing {

inline double maxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0) return 0.0;
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

/// max |a - b| / max |b|: a relative error that ignores near-zero entries.
inline double maxRelDiff(const at::Tensor& a, const at::Tensor& b) {
  const double scale = b.to(at::kDouble).abs().max().item<double>();
  return maxAbsDiff(a, b) / std::max(scale, 1e-30);
}

/// A small architecture for tests that need no Python (hidden 64, 2 layers, GQA 4/2).
inline HfConfig tinyConfig(const std::string& model_type = "qwen3", bool tied = false) {
  HfConfig c;
  c.model_type = model_type;
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.tie_word_embeddings = tied;
  c.qk_norm = model_type == "qwen3";
  c.qkv_bias = model_type == "qwen2";
  return c;
}

/// Runs `fn`, expecting loom::InputError whose message contains every one of `needles`.
inline void expectInputError(const std::function<void()>& fn,
                             const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const InputError& e) {
    const std::string msg = e.what();
    std::cout << "  InputError: " << msg << "\n";
    for (const auto& n : needles) {
      EXPECT_NE(msg.find(n), std::string::npos) << "message lacks '" << n << "': " << msg;
    }
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected loom::InputError, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected loom::InputError, nothing was thrown";
}

/// Decoder input for a right-padded batch: pads form their own document, so valid tokens
/// never see them.
inline DecoderInput paddedInput(const at::Tensor& tokens, const at::Tensor& attention_mask) {
  DecoderInput in;
  in.tokens = tokens.to(at::kLong);
  in.documents = (1 - attention_mask.to(at::kLong));
  return in;
}

/// Rows of `x` [B, T, ...] at valid positions: [N, ...].
inline at::Tensor validRows(const at::Tensor& x, const at::Tensor& attention_mask) {
  return x.index({attention_mask.to(at::kBool)});
}

}  // namespace loom::testing
