// The fuzz targets of the run records (a round's metrics, a run's settings) and of models
// (rdprune checkpoints, TorchScript archives): they need the whole torch side.
#include <filesystem>
#include <memory>

#include <torch/script.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "harness.h"
#include "rdprune/network.h"
#include "rdprune/run_record.h"
#include "seed_plan.h"

namespace rdprune::fuzz {
namespace fs = std::filesystem;
namespace {

void run_metrics(const uint8_t* data, size_t size) {
  const fs::path dir = scratch() / "run" / "round-1";
  put(dir / "metrics.json", data, size);
  put_text(dir / "plan.json", to_json(seed_plan()));
  resumed_round(dir, 1, 0.5);
}

Network& tiny_network() {
  static const std::unique_ptr<Network> network = [] {
    torch::manual_seed(0);
    ModelMeta meta;
    meta.arch = "mlp";
    meta.input_shape = {1, 8, 8};
    meta.num_classes = 2;
    return create_network(meta);
  }();
  return *network;
}

void check_tiny_settings(const fs::path& dir) {
  PipelineOptions options;
  options.method = "uniform";
  options.rd.sparsity_target = 0.5;
  check_settings(dir, options, tiny_network(), {{"fingerprint", "0123456789abcdef"}}, nullptr);
}

void run_settings(const uint8_t* data, size_t size) {
  const fs::path dir = scratch() / "settings";
  put(dir / "settings.json", data, size);
  check_tiny_settings(dir);
}

void run_model(const uint8_t* data, size_t size) {
  load_network(put(scratch() / "input.model", data, size));
}

// ---- their seeds ---------------------------------------------------------------------------------

void seed_metrics(const std::string& dir) {
  RoundResult round;
  round.round = 1;
  round.sparsity_target = 0.5;
  round.sparsity_achieved = 0.5;
  round.flops_sparsity_achieved = 0.5;
  round.pruned.top1 = 0.8;
  round.pruned.top5 = 0.95;
  round.pruned.loss = 0.5;
  round.pruned.samples = 100;
  round.finetuned = round.pruned;
  put_text(dir + "/metrics.json", round_json(round).dump(1));
}

void seed_settings(const std::string& dir) {
  const testing::TempDir made;
  check_tiny_settings(made.path());
  fs::copy_file(fs::path(made.path()) / "settings.json", fs::path(dir) / "settings.json");
}

void seed_model(const std::string& dir) {
  tiny_network().save(dir + "/checkpoint.pt");
  torch::jit::Module module("Tiny");
  module.register_parameter("weight", torch::randn({2, 64}), false);
  module.define(R"(
    def forward(self, x):
        return torch.matmul(x.flatten(1), self.weight.t())
  )");
  module.save(dir + "/script.pt");
}

}  // namespace

std::vector<Target> record_targets() {
  return {{"metrics", run_metrics, seed_metrics},
          {"settings", run_settings, seed_settings},
          {"model", run_model, seed_model}};
}

}  // namespace rdprune::fuzz
