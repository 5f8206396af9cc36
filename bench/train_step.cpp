// One SGD training step of a zoo model (default ResNet-20, 1x28x28, batch 128) in rdprune.
// Prints one JSON line: median milliseconds per step over --steps timed steps after warm-up.
// bench/train_step.sh runs this and the same step in python3-torch and prints the ratio.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "rdprune/network.h"

int main(int argc, char** argv) {
  std::string arch = "resnet20";
  int64_t batch = 128;
  int steps = 30;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--arch")
      arch = argv[i + 1];
    else if (flag == "--batch")
      batch = std::stoll(argv[i + 1]);
    else if (flag == "--steps")
      steps = std::stoi(argv[i + 1]);
    else if (flag == "--threads")
      threads = std::stoi(argv[i + 1]);
  }
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  rdprune::ModelMeta meta;
  meta.arch = arch;
  meta.input_shape = {1, 28, 28};
  meta.num_classes = 10;
  auto network = rdprune::create_network(meta);
  network->set_training(true);
  torch::optim::SGD optimizer(network->parameters(),
                              torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(5e-4));
  const auto x = torch::randn({batch, 1, 28, 28});
  const auto y = torch::randint(0, 10, {batch}, torch::kInt64);
  std::vector<double> times;
  for (int step = 0; step < steps + 5; ++step) {
    const auto start = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(network->forward(x), y);
    loss.backward();
    network->mask_gradients();
    optimizer.step();
    network->apply_masks();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (step >= 5) times.push_back(ms);  // the first steps allocate and warm caches
  }
  std::sort(times.begin(), times.end());
  std::cout << nlohmann::json{{"impl", "rdprune"},
                              {"arch", arch},
                              {"batch", batch},
                              {"threads", threads},
                              {"median_ms", times[times.size() / 2]}}
                   .dump()
            << std::endl;
}
