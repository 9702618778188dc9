// What the Trainer writes and reports (trainer_impl.hpp): the progress line and metrics,
// evaluation (eval loss, eval prompts), checkpoints and the final adapter or model.
#include <torch/torch.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "loom/comm/communicator.hpp"
#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/format.hpp"
#include "loom/core/log.hpp"
#include "loom/core/staged_folder.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
#include "loom/model/memory.hpp"
#include "loom/model/safetensors.hpp"
#include "loom/train/balancer.hpp"
#include "loom/train/checkpoint.hpp"
#include "loom/train/eval_samples.hpp"
#include "loom/train/evaluate.hpp"
#include "loom/train/loss_scaler.hpp"
#include "loom/train/metrics.hpp"
#include "loom/train/optimizer.hpp"
#include "loom/train/resume_settings.hpp"
#include "trainer_impl.hpp"

namespace loom::detail {

void Trainer::report(const StepResult& r, Clock::time_point start, int64_t first_step) {
  if (r.reweighted) {
    std::ostringstream w;
    for (double x : balancer_->weights()) w << " " << std::fixed << std::setprecision(3) << x;
    LOOM_INFO("balancer: new weights" << w.str() << " (measured tokens/s per rank)");
  }
  if (!world_.isRoot()) return;
  if (r.finite) metrics_->recordLoss(step_, r.loss);
  if (step_ % config_.train.log_every != 0 && step_ != total_steps_) return;
  const double elapsed = secondsSince(start);
  const double per_step = elapsed / static_cast<double>(step_ - first_step);
  tokens_seen_ += r.tokens;
  nlohmann::json ranks = nlohmann::json::array();
  const auto& weights = balancer_->weights();
  const double weight_total = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::ostringstream shares;
  for (int k = 0; k < world_.size(); ++k) {
    ranks.push_back({{"rank", k},
                     {"weight", weights[k]},
                     {"tokens", r.rank_tokens[k]},
                     {"compute_s", r.rank_seconds[k]},
                     {"busy_s", r.rank_busy_seconds[k]},
                     {"data_wait_s", r.rank_data_seconds[k]},
                     {"grad_sync_s", r.rank_sync_seconds[k]},
                     {"peak_memory_bytes", r.rank_memory[k]},
                     {"peak_tensor_bytes", r.rank_tensor_peak[k]}});
    shares << " " << k << ":" << std::fixed << std::setprecision(0)
           << 100.0 * weights[k] / weight_total << "%/" << std::setprecision(2) << r.rank_seconds[k]
           << "s";
  }
  nlohmann::json line = {{"step", step_},
                         {"loss", r.loss},
                         {"lr", r.lr},
                         {"grad_norm", r.grad_norm},
                         {"tokens", r.tokens},
                         {"step_s", r.step_seconds},
                         {"tokens_per_s", r.tokens / std::max(1e-9, r.step_seconds)},
                         {"skipped", !r.finite},
                         {"ranks", ranks}};
  if (scaler_.enabled()) line["loss_scale"] = scaler_.scale();
  metrics_->write(line.dump());
  std::vector<std::pair<std::string, double>> board = {
      {"train/loss", r.loss},
      {"train/lr", r.lr},
      {"train/grad_norm", r.grad_norm},
      {"train/tokens_per_s", r.tokens / std::max(1e-9, r.step_seconds)},
      {"train/step_s", r.step_seconds}};
  if (scaler_.enabled()) board.emplace_back("train/loss_scale", scaler_.scale());
  for (int k = 0; k < world_.size(); ++k) {
    const std::string rank = "rank" + std::to_string(k) + "/";
    board.emplace_back(rank + "weight", weights[k] / weight_total);
    board.emplace_back(rank + "compute_s", r.rank_seconds[k]);
    board.emplace_back(rank + "peak_memory_gib", r.rank_memory[k] / double(1LL << 30));
  }
  metrics_->scalars(step_, board);
  char head[200];
  std::snprintf(head, sizeof(head), "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s |",
                static_cast<long long>(step_), static_cast<long long>(total_steps_), r.loss, r.lr,
                r.tokens / std::max(1e-9, r.step_seconds),
                formatDuration(per_step * static_cast<double>(total_steps_ - step_)).c_str());
  LOOM_INFO(head << " ranks" << shares.str());
}

void Trainer::evaluate() {
  if (eval_planner_) evaluateLoss();
  if (eval_samples_ && world_.isRoot()) answerEvalPrompts();
}

void Trainer::answerEvalPrompts() {
  const auto started = Clock::now();
  const auto answers = eval_samples_->answer(*model_);
  for (size_t i = 0; i < answers.size(); ++i) {
    LOOM_INFO("sample at step " << step_ << " [" << i + 1 << "] " << eval_samples_->question(i)
                                << "\n  -> " << answers[i].text);
  }
  metrics_->write(eval_samples_->record(step_, answers).dump());
  metrics_->text("eval/samples", step_, eval_samples_->markdown(answers));
  LOOM_INFO("eval prompts answered in " << std::fixed << std::setprecision(1)
                                        << secondsSince(started) << " s");
}

void Trainer::evaluateLoss() {
  EvalOptions options;
  options.micro_batch = settings_.micro_batch;
  options.loss_chunk_tokens = settings_.loss_chunk_tokens;
  // This rank's weighted share of data.eval; sums are all-reduced, then divided once.
  const EvalResult local =
      evaluateSamples(*model_, *eval_data_, *eval_planner_,
                      evalShare(*eval_planner_, balancer_->weights(), world_.rank()), options);
  at::Tensor totals = torch::tensor({local.loss_sum, static_cast<double>(local.loss_tokens)},
                                    torch::TensorOptions().dtype(torch::kDouble).device(device_));
  comm_->allReduceSum(totals);
  totals = totals.to(torch::kCPU);
  const double loss = totals[0].item<double>() / std::max(1.0, totals[1].item<double>());
  if (world_.isRoot()) {
    LOOM_INFO("eval at step " << step_ << ": loss " << loss << ", perplexity " << std::exp(loss)
                              << " over " << static_cast<int64_t>(totals[1].item<double>())
                              << " tokens");
    metrics_->recordEval(step_, loss);
    metrics_->scalars(step_, {{"eval/loss", loss}, {"eval/perplexity", std::exp(loss)}});
    metrics_->write(nlohmann::json({{"step", step_},
                                    {"eval_loss", loss},
                                    {"eval_perplexity", std::exp(loss)},
                                    {"eval_tokens", totals[1].item<double>()}})
                        .dump());
  }
}

void Trainer::checkpoint() {
  const auto started = std::chrono::steady_clock::now();
  if (world_.isRoot()) {
    TrainerState state;
    state.step = step_;
    state.cursor = cursor_.toString();
    state.weights = balancer_->weights();
    state.loss_scale = scaler_.scale();
    state.loss_scale_good_steps = scaler_.goodSteps();
    state.config_hash = resumeHash(config_);
    for (const auto& [key, value] : resumeSettings(config_)) state.resume_settings[key] = value;
    state.world_size = world_.size();
    const fs::path dir = writeCheckpoint(
        run_dir_ / "checkpoints", state, config_.checkpoint.keep, [&](const fs::path& tmp) {
          NamedTensors named;
          for (size_t i = 0; i < names_.size(); ++i)
            named.emplace_back(names_[i], masters_[i].detach().to(at::kCPU));
          saveSafetensors(tmp / "trainable.safetensors", named, {});
          optimizer_->save(tmp);
          if (lora_) saveAdapter(*model_, spec_, tmp / "adapter", config_.model.path);
        });
    uintmax_t bytes = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (e.is_regular_file()) bytes += e.file_size();
    }
    char seconds[32];
    std::snprintf(seconds, sizeof(seconds), "%.1f", secondsSince(started));
    LOOM_INFO("checkpoint " << dir.string() << " (" << gibText(bytes) << ") written in " << seconds
                            << " s");
  }
  // The other ranks wait here while rank 0 writes (bounded by the collective deadline).
  world_.barrier();
}

void Trainer::saveFinal() {
  if (!world_.isRoot()) return;
  const fs::path target = run_dir_ / (lora_ ? "adapter" : "model");
  // Staged under the name it always had (a hidden sibling); the old target, from a rerun,
  // is now moved aside rather than removed before the rename.
  StagedFolder staged(
      target, /*replace=*/true,
      run_dir_ / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid())));
  if (lora_) {
    saveAdapter(*model_, spec_, staged.path(), config_.model.path);
  } else {
    saveFullModel(*model_, staged.path(), config_.model.path,
                  dtype_ == at::kFloat ? at::kFloat : dtype_, 5LL << 30);
  }
  staged.commit();
  LOOM_INFO((lora_ ? "adapter" : "model") << " written to " << target.string()
                                          << (lora_ ? " (PEFT layout)" : " (Hugging Face folder)"));
}

}  // namespace loom::detail
