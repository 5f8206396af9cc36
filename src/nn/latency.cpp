// Latency tables for channel plans (docs/channels.md, "Latency").
#include "rdprune/latency.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "rdprune/atomic_file.h"
#include "rdprune/channels.h"
#include "rdprune/error.h"
#include "rdprune/fnv.h"
#include "rdprune/progress.h"
#include "weight_uses.h"

namespace rdprune {
namespace {

constexpr const char* kLatencySchema = "rdprune.latency/1";
constexpr double kLeastTimedSeconds = 1e-3;  // calls per timing doubled until they take this long

// One layer's operation as the network runs it at the timed batch size.
struct LayerOp {
  bool convolution = false;
  std::vector<int64_t> input;   // the activation's sizes
  std::vector<int64_t> weight;  // [out, in, ...]
  bool bias = false;
  std::vector<int64_t> stride, padding, dilation;
};

// The operation of `use` of a layer whose weight is `weight`, or a reason why it cannot be timed. A
// matrix product (linear, or addmm and mm as a linear layer may run) is timed as torch::linear.
std::optional<LayerOp> op_of(const WeightUse& use, const torch::Tensor& weight, std::string& why) {
  const torch::Tensor* x = use.activation();
  const size_t w = use.weight_input;
  const bool convolution = use.op == "aten::conv2d";
  const bool product =
      use.op == "aten::linear" || use.op == "aten::addmm" || use.op == "aten::mm" || use.op == "aten::matmul";
  if (x == nullptr || (!convolution && !product) || weight.dim() < 2) {
    why = "runs as " + use.op + "; latency tables time conv2d and linear layers";
    return std::nullopt;
  }
  LayerOp op;
  op.convolution = convolution;
  op.input = x->sizes().vec();
  op.weight = weight.sizes().vec();
  // linear(x, W, b), addmm(b, x, W^T); mm and matmul add none.
  if (use.op == "aten::linear" || convolution)
    op.bias = use.inputs.size() > w + 1 && use.inputs[w + 1].isTensor();
  if (use.op == "aten::addmm") op.bias = w == 2 && use.inputs[0].isTensor();
  if (convolution) {
    const bool lists = use.inputs.size() > w + 5 && use.inputs[w + 2].isIntList() &&
                       use.inputs[w + 3].isIntList() && use.inputs[w + 4].isIntList();
    if (!lists || use.inputs[w + 5].toInt() != 1) {
      why = "is a grouped convolution or has a padding mode; latency tables time plain conv2d";
      return std::nullopt;
    }
    op.stride = use.inputs[w + 2].toIntVector();
    op.padding = use.inputs[w + 3].toIntVector();
    op.dilation = use.inputs[w + 4].toIntVector();
  }
  return op;
}

std::vector<int64_t> sample_shape(Network& network, const LatencyOptions& options) {
  const auto& input = network.meta().input_shape;
  if (input.empty()) throw Error("latency tables need the model's input shape, which it does not record");
  std::vector<int64_t> shape = {options.batch_size};
  shape.insert(shape.end(), input.begin(), input.end());
  return shape;
}

torch::Device device_of(Network& network) {
  return network.layers().front().weight.device();
}

// Every prunable layer's operation, from one forward pass at the timed batch size.
std::vector<LayerOp> observe_ops(Network& network, const LatencyOptions& options) {
  const auto& layers = network.layers();
  std::vector<std::optional<LayerOp>> ops(layers.size());
  std::vector<int> calls(layers.size(), 0);
  std::string failure;
  const WeightUseVisitor record = [&](const std::vector<size_t>& used, const WeightUse& use) {
    for (const size_t i : used) {
      if (++calls[i] > 1 && failure.empty()) failure = "layer " + layers[i].name + " runs more than once";
      std::string why;
      if (!ops[i]) ops[i] = op_of(use, layers[i].weight, why);
      if (!why.empty() && failure.empty()) failure = "layer " + layers[i].name + " " + why;
    }
  };
  torch::NoGradGuard no_grad;
  network.set_training(false);
  const torch::Tensor x =
      torch::zeros(sample_shape(network, options), torch::TensorOptions().device(device_of(network)));
  observe_weight_uses(layers, record, [&] { network.forward(x); });
  std::vector<LayerOp> found;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (failure.empty() && !ops[i]) failure = "layer " + layers[i].name + " did not run";
    if (!failure.empty()) throw Error("latency tables: " + failure);
    found.push_back(*ops[i]);
  }
  return found;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Median seconds per call of `call` over the options' repeats, each repeat making as many calls as
// take at least kLeastTimedSeconds.
double time_calls(const std::function<void()>& call, const LatencyOptions& options, torch::Device device) {
  auto finish = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  auto seconds = [&](int64_t calls) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t c = 0; c < calls; ++c) call();
    finish();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  call();  // warm-up
  finish();
  int64_t calls = 1;
  double first = seconds(calls);
  while (first < kLeastTimedSeconds && calls < (int64_t{1} << 20)) first = seconds(calls *= 2);
  std::vector<double> samples = {first / static_cast<double>(calls)};
  for (int64_t r = 1; r < options.repeats; ++r)
    samples.push_back(seconds(calls) / static_cast<double>(calls));
  return median(samples);
}

// Seconds of `op` with `out` output and `in` input features.
double time_op(const LayerOp& op, int64_t out, int64_t in, const LatencyOptions& options,
               torch::Device device) {
  std::vector<int64_t> weight = op.weight;
  weight[0] = out;
  weight[1] = in;
  std::vector<int64_t> input = op.input;
  input[op.convolution ? 1 : input.size() - 1] = in;
  const auto on = torch::TensorOptions().device(device);
  const torch::Tensor x = torch::randn(input, on);
  const torch::Tensor w = torch::randn(weight, on);
  const torch::Tensor b = op.bias ? torch::randn({out}, on) : torch::Tensor();
  torch::NoGradGuard no_grad;
  if (op.convolution)
    return time_calls([&] { torch::conv2d(x, w, b, op.stride, op.padding, op.dilation, 1); }, options,
                      device);
  return time_calls([&] { torch::linear(x, w, b); }, options, device);
}

// `grid` widths from 1 to `channels`, evenly spread (every width when there are fewer).
std::vector<int64_t> grid_widths(int64_t channels, int64_t grid) {
  std::vector<int64_t> widths;
  for (int64_t k = 0; k < grid; ++k) {
    const int64_t width = 1 + static_cast<int64_t>(std::llround(static_cast<double>((channels - 1) * k) /
                                                                static_cast<double>(grid - 1)));
    if (widths.empty() || width > widths.back()) widths.push_back(width);
  }
  return widths;
}

// The widths one side of a layer is timed at: the grid over its `channels` (its group's, or its
// input channels), or its own `features` where it has none (channels 0).
std::vector<int64_t> side_widths(int64_t channels, int64_t features, int64_t grid) {
  if (channels <= 0) return {features};
  return grid_widths(channels, grid);
}

// The layer's table at the grid's widths: each pair of widths scales the weight's sides.
LatencyTable measure_table(const ChannelCostModel& model, const ChannelLayerCost& layer, const LayerOp& op,
                           const LatencyOptions& options, torch::Device device, Progress& progress) {
  const int64_t out_channels = output_channels(model, layer);
  const int64_t in_channels = input_channels(model, layer);
  const auto out_widths = side_widths(out_channels, op.weight[0], options.grid);
  const auto in_widths = side_widths(in_channels, op.weight[1], options.grid);
  auto features = [](int64_t full, int64_t width, int64_t channels) {
    return channels == 0 ? full : full / channels * width;  // per channel: full / channels features
  };
  LatencyTable table{out_widths, in_widths, {}};
  for (const int64_t o : out_widths) {
    for (const int64_t i : in_widths) {
      table.seconds.push_back(time_op(op, features(op.weight[0], o, out_channels),
                                      features(op.weight[1], i, in_channels), options, device));
      progress.advance(1, layer.name);
    }
  }
  make_monotone(table);
  return table;
}

// Whether `model` is the cost model of `network`'s groups and layers.
void check_model_of(Network& network, const ChannelCostModel& model) {
  const auto groups = channel_groups(network);
  bool same = groups.size() == model.groups.size() && network.layers().size() == model.layers.size();
  for (size_t g = 0; same && g < groups.size(); ++g)
    same = groups[g].name == model.groups[g] && groups[g].channels == model.channels[g];
  for (size_t i = 0; same && i < model.layers.size(); ++i)
    same = network.layers()[i].name == model.layers[i].name;
  if (!same)
    throw Error("latency tables: the channel costs are not this model's (its groups or layers differ)");
}

std::string cache_key(Network& network, const ChannelCostModel& model, const std::vector<LayerOp>& ops,
                      const std::string& setting, const LatencyOptions& options) {
  Fnv hash;
  hash.add(kLatencySchema);
  hash.add(setting);
  hash.add(fmt::format("grid {} repeats {}", options.grid, options.repeats));
  hash.add(network.meta().arch);
  for (size_t g = 0; g < model.groups.size(); ++g)
    hash.add(fmt::format("{} {}", model.groups[g], model.channels[g]));
  for (size_t i = 0; i < ops.size(); ++i) {
    const LayerOp& op = ops[i];
    hash.add(fmt::format("{} {} {} {} {} {} {} {} {} {}", model.layers[i].name, op.convolution,
                         fmt::join(op.input, ","), fmt::join(op.weight, ","), op.bias,
                         fmt::join(op.stride, ","), fmt::join(op.padding, ","), fmt::join(op.dilation, ","),
                         model.layers[i].out_group, fmt::join(model.layers[i].in_groups, ",")));
    if (model.layers[i].in_whole > 0) hash.add(fmt::format("in_whole {}", model.layers[i].in_whole));
  }
  return hash.hex();
}

nlohmann::json tables_to_json(const ChannelCostModel& model) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : model.layers) {
    layers.push_back({{"layer", layer.name},
                      {"out_widths", layer.latency.out_widths},
                      {"in_widths", layer.latency.in_widths},
                      {"seconds", layer.latency.seconds}});
  }
  return {{"schema", kLatencySchema},
          {"setting", model.latency_setting},
          {"rest_seconds", model.latency_rest},
          {"layers", layers}};
}

// Fills `model` from a cache file; false (and `model` untouched) when the file is not usable.
bool tables_from_file(const std::string& path, ChannelCostModel& model) {
  try {
    const auto json = nlohmann::json::parse(read_file(path));
    ChannelCostModel read = model;
    if (json.at("schema") != kLatencySchema || json.at("layers").size() != read.layers.size()) return false;
    for (size_t i = 0; i < read.layers.size(); ++i) {
      const auto& entry = json["layers"][i];
      if (entry.at("layer") != read.layers[i].name) return false;
      read.layers[i].latency = {entry.at("out_widths").get<std::vector<int64_t>>(),
                                entry.at("in_widths").get<std::vector<int64_t>>(),
                                entry.at("seconds").get<std::vector<double>>()};
    }
    read.latency_setting = json.at("setting").get<std::string>();
    read.latency_rest = json.at("rest_seconds").get<double>();
    validate(read, path);
    model = std::move(read);
    return true;
  } catch (const std::exception&) {
    return false;  // measured again and rewritten
  }
}

std::string machine() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::string cpu = "unknown processor";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    cpu = line.substr(line.find(':') == std::string::npos ? line.size() : line.find(':') + 2);
    break;
  }
  return fmt::format("{}, {}, {} cores", host, cpu, std::thread::hardware_concurrency());
}

}  // namespace

void validate(const LatencyOptions& options) {
  if (options.batch_size < 1) throw UsageError("latency_batch", "expected a batch size >= 1");
  if (options.grid < 2) throw UsageError("latency_grid", "expected at least 2 widths per side");
  if (options.repeats < 1) throw UsageError("latency_repeats", "expected at least 1");
}

std::string latency_setting(Network& network, const LatencyOptions& options) {
  return fmt::format("batch {}, {} threads, {}, {}", options.batch_size, torch::get_num_threads(),
                     device_of(network).str(), machine());
}

void measure_latency(Network& network, ChannelCostModel& model, const LatencyOptions& options) {
  validate(options);
  check_model_of(network, model);
  const std::string setting = latency_setting(network, options);
  const auto ops = observe_ops(network, options);
  const std::string path = options.cache_dir.empty()
                               ? std::string()
                               : (std::filesystem::path(options.cache_dir) /
                                  ("latency-" + cache_key(network, model, ops, setting, options) + ".json"))
                                     .string();
  if (!path.empty() && std::filesystem::exists(path) && tables_from_file(path, model)) return;

  const torch::Device device = device_of(network);
  int64_t cells = 0;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const auto& layer = model.layers[i];
    cells += static_cast<int64_t>(
        side_widths(output_channels(model, layer), ops[i].weight[0], options.grid).size() *
        side_widths(input_channels(model, layer), ops[i].weight[1], options.grid).size());
  }
  Progress progress("latency tables", cells, options.sink);
  for (size_t i = 0; i < model.layers.size(); ++i)
    model.layers[i].latency = measure_table(model, model.layers[i], ops[i], options, device, progress);
  progress.finish();
  torch::NoGradGuard no_grad;
  network.set_training(false);
  const torch::Tensor x = torch::randn(sample_shape(network, options), torch::TensorOptions().device(device));
  const double whole = time_calls([&] { network.forward(x); }, options, device);
  double layers = 0;
  for (const auto& layer : model.layers) layers += layer.latency.seconds.back();
  model.latency_rest = std::max(0.0, whole - layers);
  model.latency_setting = setting;
  validate(model, "latency tables");
  if (!path.empty()) {
    std::filesystem::create_directories(options.cache_dir);
    write_file_atomic(path, tables_to_json(model).dump(1) + "\n");
  }
}

}  // namespace rdprune
