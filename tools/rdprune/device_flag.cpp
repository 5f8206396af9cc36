// --device: where the model runs.
#include <cstdlib>

#include <torch/torch.h>

#include "common.h"
#include "rdprune/error.h"

namespace rdprune::cli {
namespace {

int local_rank() {
  const char* text = std::getenv("LOCAL_RANK");
  if (text == nullptr) return 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  return *text != '\0' && *end == '\0' && value >= 0 && value < (1 << 20) ? static_cast<int>(value) : 0;
}

}  // namespace

torch::Device default_device() {
  if (!torch::cuda::is_available()) return torch::kCPU;
  const int count = static_cast<int>(torch::cuda::device_count());
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank() % count)};
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
  const int index = indexed ? std::stoi(text.substr(prefix.size())) : local_rank() % count;
  if (index >= count)
    throw UsageError(flag + ": there are " + std::to_string(count) +
                     " CUDA devices (cuda:0..cuda:" + std::to_string(count - 1) + ")");
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(index)};
}

void add_device_flag(CLI::App& command, torch::Device& device) {
  device = default_device();
  command
      .add_option_function<std::string>(
          "--device", [&device](const std::string& text) { device = parse_device(text); },
          "cpu | cuda | cuda:N: where the model runs (default: cuda:LOCAL_RANK where CUDA is available, "
          "else cpu)")
      ->type_name("DEVICE");
}

}  // namespace rdprune::cli
