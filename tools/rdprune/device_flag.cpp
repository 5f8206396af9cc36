// --device: where the model runs.
#include <ATen/Context.h>
#include <torch/torch.h>

#include "common.h"
#include "rdprune/error.h"
#include "rdprune/process_group.h"

namespace rdprune::cli {
namespace {

// On a GPU, float32 arithmetic in full precision and cuDNN's deterministic algorithms: LibTorch's
// defaults let cuDNN convolutions round their inputs to TF32 (10-bit mantissas) and pick the
// fastest algorithm by timing, so that distortions at light pruning levels would drown in rounding
// noise and a fixed seed would not give the same training run twice.
void exact_arithmetic_on(const torch::Device& device) {
  if (!device.is_cuda()) return;
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setBenchmarkCuDNN(false);
  at::globalContext().setDeterministicCuDNN(true);
}

}  // namespace

torch::Device default_device() {
  if (!torch::cuda::is_available()) return torch::kCPU;
  const int count = static_cast<int>(torch::cuda::device_count());
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(place_from_environment().local_rank % count)};
}

torch::Device parse_device(const std::string& text) {
  const std::string flag = "--device " + text;
  if (text == "cpu") return torch::kCPU;
  const std::string prefix = "cuda:";
  const bool indexed = text.rfind(prefix, 0) == 0 && text.size() > prefix.size() &&
                       text.size() <= prefix.size() + 4 &&
                       text.find_first_not_of("0123456789", prefix.size()) == std::string::npos;
  if (text != "cuda" && !indexed) throw UsageError(flag + ": expected cpu, cuda or cuda:N");
  if (!torch::cuda::is_available()) {
    throw UsageError(flag +
                     ": no CUDA device here (this LibTorch was built without CUDA, or the machine "
                     "has no GPU)");
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  const int index =
      indexed ? std::stoi(text.substr(prefix.size())) : place_from_environment().local_rank % count;
  if (index >= count)
    throw UsageError(flag + ": there are " + std::to_string(count) +
                     " CUDA devices (cuda:0..cuda:" + std::to_string(count - 1) + ")");
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(index)};
}

void add_device_flag(CLI::App& command, torch::Device& device) {
  CLI::Option* option =
      command
          .add_option_function<std::string>(
              "--device", [&device](const std::string& text) { device = parse_device(text); },
              "cpu | cuda | cuda:N: where the model runs (default: cuda:LOCAL_RANK where CUDA is "
              "available, else cpu)")
          ->type_name("DEVICE");
  // The default is resolved once the command line is parsed, so that only a command that runs asks
  // for CUDA (never --help), with LOCAL_RANK read as every launcher variable is.
  command.parse_complete_callback([&device, option] {
    if (option->count() == 0) device = default_device();
    exact_arithmetic_on(device);
  });
}

}  // namespace rdprune::cli
