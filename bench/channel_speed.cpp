// Latency of channel-pruned zoo or TorchScript models against the dense one, side by side in one process:
// each model keeps the uniform rule's channels at a FLOPs target (the widths decide the time, not the
// weights), is made physically smaller (remove_pruned_channels), and is timed with the dense model
// in alternation at batch 1 and 64, with 1 and 2 threads. Printed: each model's kept share of the
// multiply-accumulates beside its measured speedup (dense time / its time, median of the repeats).
// Usage: bench_channel_speed [arch or model file] [C,H,W] [targets or model files] [repeats]
//   defaults: vgg16 3,32,32 0.3,0.5,0.7 7; a TorchScript file (e.g. torchvision's resnet18, scripted)
//   is pruned and timed as TorchScript. A smaller TorchScript model's forward is inlined (its
//   method calls become its code); the dense one is timed inlined too, so that the code differs only
//   in the tensors' widths. Given model files instead of targets (`a.pt,b.pt`: the smaller models
//   `prune` wrote for channel plans of the dense model file), those are timed against it.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "model_timing.h"
#include "rdprune/channel_allocate.h"
#include "rdprune/channels.h"
#include "rdprune/text.h"

using rdprune::Network;

// The TorchScript model at `path`, its forward inlined, written to a temporary file: its path.
std::string inlined_copy(const std::string& path) {
  torch::jit::Module module = torch::jit::load(path);
  torch::jit::Inline(*module.get_method("forward").graph());
  const std::string copy =
      (std::filesystem::temp_directory_path() / "bench_channel_speed.dense.ts.pt").string();
  module.save(copy);
  return copy;
}

bool is_file(const std::string& text) {
  return text.size() > 3 && text.compare(text.size() - 3, 3, ".pt") == 0;
}

// Multiply-accumulates per sample of every prunable layer.
double layer_flops(Network& network, const std::vector<int64_t>& shape) {
  double flops = 0;
  for (const auto& info : rdprune::layer_census(network, shape))
    flops += static_cast<double>(info.weights) * std::max(0.0, info.flops_per_weight);
  return flops;
}

int main(int argc, char** argv) {
  rdprune::bench::steady_allocator();
  const std::string arch = argc > 1 ? argv[1] : "vgg16";
  const std::string shape_text = argc > 2 ? argv[2] : "3,32,32";
  const std::string targets_text = argc > 3 ? argv[3] : "0.3,0.5,0.7";
  const int repeats = argc > 4 ? std::stoi(argv[4]) : 7;
  std::vector<int64_t> shape;
  for (const auto& part : rdprune::split_list(shape_text, "shape")) shape.push_back(std::stoll(part));
  torch::manual_seed(0);
  rdprune::ModelMeta meta{arch, shape, 10, "", {}, {}};
  // A zoo architecture (random weights, the same in every copy), or a model file: a TorchScript
  // model is pruned and timed as TorchScript.
  const bool file = is_file(arch);
  auto dense = file ? rdprune::load_network(arch) : rdprune::create_network(meta);
  const bool script = dense->format() == "torchscript";
  const std::string path = script ? inlined_copy(arch) : arch;
  if (script) dense = rdprune::load_network(path);
  const auto fresh = [&] {
    if (file) return rdprune::load_network(path);
    auto copy = rdprune::create_network(meta);
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < copy->parameters().size(); ++i)
      copy->parameters()[i].copy_(dense->parameters()[i]);
    return copy;
  };
  const auto infos = rdprune::layer_census(*dense, shape);
  const auto groups = rdprune::channel_groups(*dense);
  const auto costs = rdprune::channel_cost_model(groups, infos);

  std::vector<std::unique_ptr<Network>> pruned;
  std::vector<double> kept_share;
  std::vector<std::string> labels = {"dense"};
  const auto entries = rdprune::split_list(targets_text, "targets");
  const double dense_flops = layer_flops(*dense, shape);
  for (const auto& entry : entries) {
    if (!is_file(entry)) continue;
    pruned.push_back(rdprune::load_network(entry));
    kept_share.push_back(layer_flops(*pruned.back(), shape) / dense_flops);
    labels.push_back(std::filesystem::path(entry).stem().string());
  }
  for (const auto& target : entries) {
    if (is_file(target)) continue;
    rdprune::RdOptions options;
    options.budget = rdprune::BudgetKind::kFlops;
    options.sparsity_target = std::stod(target);
    const rdprune::Plan plan = rdprune::allocate_channels_uniform(costs, options);
    auto copy = fresh();
    rdprune::apply_channel_plan(*copy, plan, "uniform");
    pruned.push_back(rdprune::remove_pruned_channels(*copy));
    kept_share.push_back(1.0 - plan.flops_sparsity_achieved());
    labels.push_back("-" + target + " FLOPs");
  }
  std::vector<Network*> models = {dense.get()};
  for (auto& model : pruned) models.push_back(model.get());
  for (Network* model : models) model->set_training(false);

  std::printf("%s %s, %s, median of %d repeats; speedup = dense time / model time\n", arch.c_str(),
              shape_text.c_str(), is_file(entries.front()) ? "the models given" : "uniform channel plans",
              repeats);
  std::printf("%-16s %10s %12s %12s %12s %12s\n", "model", "kept FLOPs", "b1 t1", "b1 t2", "b64 t1",
              "b64 t2");
  std::vector<std::vector<double>> speedups(models.size());
  torch::NoGradGuard no_grad;
  for (const int64_t batch : {1, 64}) {
    for (const int threads : {1, 2}) {
      torch::set_num_threads(threads);
      const torch::Tensor x = torch::randn({batch, shape[0], shape[1], shape[2]});
      const auto samples = rdprune::bench::time_models(models, x, repeats);
      const double dense_seconds = rdprune::bench::median(samples[0]);
      for (size_t m = 0; m < models.size(); ++m)
        speedups[m].push_back(dense_seconds / rdprune::bench::median(samples[m]));
    }
  }
  for (size_t m = 0; m < models.size(); ++m) {
    std::printf("%-16s %10.3f", labels[m].c_str(), m == 0 ? 1.0 : kept_share[m - 1]);
    for (const double s : speedups[m]) std::printf(" %11.2fx", s);
    std::printf("\n");
  }
  return 0;
}
