// Samples saved from Python: torch.save({"x": images, "y": labels}, path).
#include <filesystem>

#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>

#include "rdprune/atomic_file.h"
#include "rdprune/child_probe.h"
#include "rdprune/dataset.h"
#include "rdprune/error.h"
#include "rdprune/torch_reason.h"
#include "rdprune/zip_check.h"

namespace rdprune {

std::pair<torch::Tensor, torch::Tensor> read_tensor_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw Error(path + ": no such tensor file");
  const std::string bytes = read_file(path);
  c10::IValue value;
  try {
    check_zip_records(path);
    const std::vector<char> archive(bytes.begin(), bytes.end());
    // LibTorch's unpickler crashes on some damaged archives: they are read in a child first.
    const ChildReading trial = read_in_child([&] {
      torch::pickle_load(archive);
      return std::string();
    });
    if (!trial.read)
      throw Error(trial.crashed ? "LibTorch crashed reading it (" + trial.reason + ")" : trial.reason);
    value = torch::pickle_load(archive);
  } catch (const std::exception& e) {
    throw Error(path + ": cannot read it as a torch.save file of a dict with tensors 'x' and 'y' (" +
                torch_reason(e) + ")");
  }
  if (!value.isGenericDict()) throw Error(path + ": expected a dict with tensors 'x' and 'y'");
  torch::Tensor x, y;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor()) continue;
    if (item.key().toStringRef() == "x") x = item.value().toTensor();
    if (item.key().toStringRef() == "y") y = item.value().toTensor();
  }
  if (!x.defined() || !y.defined()) throw Error(path + ": expected a dict with tensors 'x' and 'y'");
  if (x.dim() == 3) x = x.unsqueeze(1);  // [N, H, W]: one channel
  if (x.dim() != 4) throw Error(path + ": 'x' must be [N, C, H, W] or [N, H, W]");
  if (y.dim() != 1 || y.size(0) != x.size(0)) {
    throw Error(path + ": 'y' must be [N] with one label per sample of 'x'");
  }
  if (x.size(0) == 0) throw Error(path + ": no samples");
  if (y.is_floating_point() || y.scalar_type() == torch::kBool)
    throw Error(path + ": 'y' must hold integer labels");
  y = y.to(torch::kInt64).contiguous();
  if (y.min().item<int64_t>() < 0) throw Error(path + ": 'y' has negative labels");
  if (x.scalar_type() != torch::kUInt8) {
    if (!x.is_floating_point()) throw Error(path + ": 'x' must be uint8 or floating point");
    x = x.to(torch::kFloat32);
    if (!torch::isfinite(x).all().item<bool>()) throw Error(path + ": 'x' holds NaN or infinite values");
  }
  return {x.contiguous(), y};
}

}  // namespace rdprune
