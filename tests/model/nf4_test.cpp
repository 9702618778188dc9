// NF4 on its own (bitsandbytes parity is nf4_reference_test.cpp): rounding error within half a
// level gap of each block's absmax, the frozen 4-bit linear's forward and input gradient equal
// to a plain linear over the dequantized weight, no gradient for the base, a quantized
// projection with LoRA training exactly like an fp32 one holding the dequantized weight, and the
// bitsandbytes 4-bit checkpoint reader refusing malformed entries by file and tensor.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"
#include "loom/model/bnb_4bit.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/nf4.hpp"
#include "loom/model/safetensors.hpp"
#include "model_test_util.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::TempDir;

TEST(Nf4, RoundTripErrorIsWithinHalfALevelGapOfTheBlockAbsmax) {
  torch::manual_seed(1);
  for (bool dq : {false, true}) {
    const auto w = torch::randn({37, 70});  // 2590 values: a partial last block
    const Nf4Weight q = quantizeNf4(w, dq);
    EXPECT_EQ(q.packed.numel(), (w.numel() + 1) / 2);
    EXPECT_EQ(q.blocks(), (w.numel() + 63) / 64);
    const auto back = dequantizeNf4(q, at::kFloat);
    ASSERT_EQ(back.sizes(), w.sizes());
    // Half the widest gap between NF4 levels (-1 to -0.696: 0.304) times the block's absmax
    // bounds the error (double quant adds the absmax's own 8-bit error, < 1%).
    double gap = 0;
    for (size_t i = 0; i + 1 < nf4Levels().size(); ++i) {
      gap = std::max<double>(gap, nf4Levels()[i + 1] - nf4Levels()[i]);
    }
    const auto flat = w.reshape(-1), err = (back.reshape(-1) - flat).abs();
    const auto pad = at::cat({flat.abs(), at::zeros({q.blocks() * 64 - flat.numel()})});
    const auto absmax = std::get<0>(pad.view({q.blocks(), 64}).max(1));
    const auto bound = absmax.repeat_interleave(64).slice(0, 0, flat.numel()) * (gap / 2 * 1.01);
    EXPECT_TRUE((err <= bound).all().item<bool>()) << "double quant " << dq;
    // Zero stays zero and block maxima are exact (level +-1) without double quant.
    if (!dq) {
      EXPECT_TRUE(at::allclose(std::get<0>(back.reshape(-1).abs().max(0, true)), flat.abs().max()));
    }
  }
}

TEST(Nf4, LinearForwardAndInputGradientEqualThoseOfTheDequantizedWeight) {
  torch::manual_seed(2);
  const auto w = torch::randn({48, 64}) * 0.05;
  const Nf4Weight q = quantizeNf4(w);
  const auto wd = dequantizeNf4(q, at::kFloat);
  const auto bias = torch::randn({48});
  auto x = torch::randn({3, 5, 64}).requires_grad_(true);
  auto x_ref = x.detach().clone().requires_grad_(true);
  auto y = nf4Linear(x, q, bias);
  auto y_ref = at::linear(x_ref, wd, bias);
  EXPECT_TRUE(at::equal(y, y_ref));
  const auto dy = torch::randn_like(y);
  y.backward(dy);
  y_ref.backward(dy);
  // dx = dy W: the same product; allow the last bit for matmul vs linear-backward kernels.
  EXPECT_LE((x.grad() - x_ref.grad()).abs().max().item<double>(),
            1e-6 * x_ref.grad().abs().max().item<double>());
  EXPECT_THROW(nf4Linear(x, q, bias.clone().requires_grad_(true)), Error);
}

TEST(Nf4, QuantizedProjectionsTrainLoraLikeFloatOnesHoldingTheDequantizedWeights) {
  torch::manual_seed(3);
  DecoderOptions nf4_options;
  nf4_options.nf4_base = true;
  CausalLm q(testing::tinyConfig(), nf4_options);
  q.initRandom();
  CausalLm f(testing::tinyConfig(), DecoderOptions{});
  {
    torch::NoGradGuard no_grad;
    auto fp = f.named_parameters();
    for (const auto& item : q.named_parameters()) fp[item.key()].copy_(item.value());
    auto qp = q.projections(), pp = f.projections();
    for (size_t i = 0; i < qp.size(); ++i) {
      ASSERT_TRUE(qp[i].second->quantized());
      ASSERT_FALSE(pp[i].second->quantized());
      pp[i].second->weight().copy_(dequantizeNf4(qp[i].second->nf4(), at::kFloat));
    }
  }
  // No base weight is a parameter of the quantized model.
  for (const auto& item : q.named_parameters()) {
    EXPECT_EQ(item.key().find("_proj.weight"), std::string::npos) << item.key();
  }
  for (auto* m : {&q, &f}) {
    for (auto& [path, proj] : m->projections()) {
      torch::manual_seed(4);
      proj->enableLora(4, 2.0, 0.0, at::kFloat);
      torch::NoGradGuard no_grad;
      proj->loraB().normal_(0.0, 0.1);
    }
  }
  DecoderInput in;
  in.tokens = torch::randint(300, {2, 9});
  auto hq = q.hidden(in), hf = f.hidden(in);
  EXPECT_LE((hq - hf).abs().max().item<double>(), 1e-6);
  hq.pow(2).sum().backward();
  hf.pow(2).sum().backward();
  auto qp = q.projections(), pp = f.projections();
  for (size_t i = 0; i < qp.size(); ++i) {
    const auto& ga = qp[i].second->loraA().grad();
    const auto& gb = pp[i].second->loraA().grad();
    ASSERT_TRUE(ga.defined()) << qp[i].first;
    EXPECT_LE((ga - gb).abs().max().item<double>(), 1e-5 * gb.abs().max().item<double>() + 1e-12)
        << qp[i].first;
  }
  EXPECT_THROW(qp[0].second->mergeLora(), Error);
}

// ---- bitsandbytes 4-bit checkpoint entries -------------------------------------------------

/// `name` stored as transformers saves a 4-bit weight; `edit` may change the JSON.
NamedTensors bnbEntries(const std::string& name, const Nf4Weight& q,
                        const std::function<void(nlohmann::json&)>& edit = {}) {
  nlohmann::json qs = {{"quant_type", "nf4"},      {"blocksize", q.blocksize},
                       {"dtype", "float32"},       {"shape", q.shape},
                       {"nested_blocksize", 256},  {"nested_dtype", "float32"},
                       {"nested_offset", q.offset}};
  if (edit) edit(qs);
  const std::string text = qs.dump();
  auto bytes = at::empty({static_cast<int64_t>(text.size())}, at::kByte);
  std::memcpy(bytes.data_ptr(), text.data(), text.size());
  return {{name, q.packed.view({-1, 1})},
          {name + ".absmax", q.absmax},
          {name + ".quant_map", at::tensor(nf4Levels(), at::kFloat)},
          {name + ".nested_absmax", q.nested_absmax},
          {name + ".nested_quant_map", q.nested_code},
          {name + ".quant_state.bitsandbytes__nf4", bytes}};
}

TEST(Bnb4bit, ReadsWhatTransformersWritesAndRefusesMalformedEntries) {
  TempDir dir("loom-bnb");
  torch::manual_seed(5);
  const Nf4Weight q = quantizeNf4(torch::randn({32, 64}));
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  auto write = [&](const NamedTensors& t) {
    const auto path = dir.path() / "model.safetensors";
    saveSafetensors(path, t);
    return SafetensorsCheckpoint::open(dir.path());
  };
  {
    const auto ckpt = write(bnbEntries(name, q));
    ASSERT_TRUE(isBnb4bitTensor(ckpt, name));
    EXPECT_EQ(bnb4bitKeys(ckpt, name).size(), 6u);
    const Nf4Weight r = readBnb4bit(ckpt, name, {32, 64});
    EXPECT_TRUE(at::equal(dequantizeNf4(r, at::kFloat), dequantizeNf4(q, at::kFloat)));
  }
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& j) { j["blocksize"] = 48; }, "quant_state.blocksize 48"},
      {[](nlohmann::json& j) {
         j["shape"] = {64, 32};
       },
       "quant_state.shape [64,32]"},
      {[](nlohmann::json& j) { j.erase("nested_offset"); }, "no 'nested_offset'"},
      {[](nlohmann::json& j) { j["quant_type"] = "int4"; }, "quant_type \"int4\""},
      {[](nlohmann::json& j) { j["nested_blocksize"] = 100; }, "nested_blocksize 100"},
  };
  for (const auto& c : cases) {
    const auto ckpt = write(bnbEntries(name, q, c.edit));
    try {
      readBnb4bit(ckpt, name, {32, 64});
      ADD_FAILURE() << "accepted; expected " << c.expect;
    } catch (const InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(c.expect), std::string::npos) << what;
      EXPECT_NE(what.find("model.safetensors"), std::string::npos) << what;
      EXPECT_NE(what.find(name + ".quant_state.bitsandbytes__nf4"), std::string::npos) << what;
    }
  }
  // Corrupt JSON and a truncated absmax are refused naming the tensor.
  auto entries = bnbEntries(name, q);
  entries.back().second = entries.back().second.slice(0, 0, 10).clone();
  EXPECT_THROW(readBnb4bit(write(entries), name, {32, 64}), InputError);
  entries = bnbEntries(name, q);
  entries[1].second = entries[1].second.slice(0, 0, 3).clone();
  try {
    readBnb4bit(write(entries), name, {32, 64});
    ADD_FAILURE() << "a truncated absmax was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(name + ".absmax"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom
