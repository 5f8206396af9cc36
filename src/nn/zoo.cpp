#include "rdprune/zoo.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "rdprune/error.h"

namespace rdprune {
namespace nn = torch::nn;

void ZooNetImpl::add_stage(std::vector<std::string> prefixes, std::function<Values(Values)> stage) {
  stage_prefixes_.push_back(std::move(prefixes));
  stages_.push_back(std::move(stage));
}

void ZooNetImpl::add_stage(std::string prefix, std::function<torch::Tensor(torch::Tensor)> stage) {
  add_stage(std::vector<std::string>{std::move(prefix)},
            [stage = std::move(stage)](Values x) -> Values { return {stage(std::move(x.at(0)))}; });
}

size_t ZooNetImpl::add_group(const std::string& layer, int64_t channels, bool bias, const std::string& norm,
                             const std::vector<std::pair<std::string, int64_t>>& readers) {
  groups_.push_back({layer, channels, {}});
  const size_t group = groups_.size() - 1;
  tie_producer(group, layer, norm);
  if (bias) groups_[group].slices.push_back({layer + ".bias", 0, 1});
  for (const auto& [reader, per_channel] : readers) add_reader(group, reader, per_channel);
  return group;
}

void ZooNetImpl::tie_producer(size_t group, const std::string& layer, const std::string& norm) {
  auto& slices = groups_.at(group).slices;
  slices.push_back({layer + ".weight", 0, 1});
  if (norm.empty()) return;
  for (const char* tensor : {".weight", ".bias", ".running_mean", ".running_var"})
    slices.push_back({norm + tensor, 0, 1});
}

void ZooNetImpl::add_reader(size_t group, const std::string& reader, int64_t per_channel) {
  groups_.at(group).slices.push_back({reader + ".weight", 1, per_channel});
}

void ZooNetImpl::add_block_group(const std::string& name, int64_t channels, int64_t per_channel,
                                 const std::vector<std::string>& producers,
                                 const std::vector<std::string>& readers) {
  groups_.push_back({name, channels, {}});
  auto& slices = groups_.back().slices;
  for (const auto& producer : producers) {
    slices.push_back({producer + ".weight", 0, per_channel});
    slices.push_back({producer + ".bias", 0, per_channel});
  }
  for (const auto& reader : readers) slices.push_back({reader + ".weight", 1, per_channel});
}

int64_t width_of(const ZooSpec& spec, const std::string& name, int64_t dense) {
  const auto it = spec.widths.find(name);
  if (it == spec.widths.end()) return dense;
  if (it->second < 1) throw UsageError("widths", name + ": a group keeps at least one channel");
  return it->second;
}

ZooNetImpl::Values ZooNetImpl::run_range(size_t first, size_t last, Values x) {
  for (size_t i = first; i < std::min(last, stages_.size()); ++i) x = stages_[i](std::move(x));
  return x;
}

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// He et al. 2016 residual blocks; names follow torchvision (conv1, bn1, ..., downsample.0/1).
struct ResidualBlockImpl : nn::Module {
  // `inner` holds the widths of the channels inside the block (conv1's outputs, and conv2's in a
  // bottleneck) and `out` its output's (`planes`, x4 in a bottleneck, when dense), which channel
  // pruning may narrow. `project`: the shortcut is a strided 1x1 convolution (downsample), else the
  // input itself.
  ResidualBlockImpl(int64_t in, int64_t out, int64_t stride, bool bottleneck, bool project,
                    std::array<int64_t, 2> inner)
      : bottleneck_(bottleneck) {
    if (bottleneck) {
      conv1 = register_module("conv1", conv(in, inner[0], 1, 1, 0));
      bn1 = register_module("bn1", nn::BatchNorm2d(inner[0]));
      conv2 = register_module("conv2", conv(inner[0], inner[1], 3, stride, 1));
      bn2 = register_module("bn2", nn::BatchNorm2d(inner[1]));
      conv3 = register_module("conv3", conv(inner[1], out, 1, 1, 0));
      bn3 = register_module("bn3", nn::BatchNorm2d(out));
    } else {
      conv1 = register_module("conv1", conv(in, inner[0], 3, stride, 1));
      bn1 = register_module("bn1", nn::BatchNorm2d(inner[0]));
      conv2 = register_module("conv2", conv(inner[0], out, 3, 1, 1));
      bn2 = register_module("bn2", nn::BatchNorm2d(out));
    }
    if (project) {
      downsample =
          register_module("downsample", nn::Sequential(conv(in, out, 1, stride, 0), nn::BatchNorm2d(out)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) { return tail(x, head(x)); }
  // The block in two halves, so that suffix execution can start at conv2 with the block's input
  // and the first convolution's output in hand.
  torch::Tensor head(const torch::Tensor& x) { return torch::relu(bn1(conv1(x))); }
  torch::Tensor tail(const torch::Tensor& x, const torch::Tensor& branch) {
    torch::Tensor out = bn2(conv2(branch));
    if (bottleneck_) out = bn3(conv3(torch::relu(out)));
    out += downsample.is_empty() ? x : downsample->forward(x);
    return torch::relu(out);
  }

  bool bottleneck_;
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  nn::Sequential downsample{nullptr};
};
TORCH_MODULE(ResidualBlock);

struct ResNetConfig {
  std::vector<int64_t> blocks;  // blocks per stage
  std::vector<int64_t> widths;  // planes per stage
  bool bottleneck = false;
  bool imagenet_stem = false;  // 7x7/2 conv + 3x3/2 max-pool instead of one 3x3/1 conv
};

class ResNetImpl : public ZooNetImpl {
 public:
  ResNetImpl(const ResNetConfig& config, const ZooSpec& spec) {
    const int64_t stem_width = width_of(spec, "conv1", config.widths.front());
    if (config.imagenet_stem) {
      conv1 = register_module("conv1", conv(spec.in_channels, stem_width, 7, 2, 3));
    } else {
      conv1 = register_module("conv1", conv(spec.in_channels, stem_width, 3, 1, 1));
    }
    bn1 = register_module("bn1", nn::BatchNorm2d(stem_width));
    const bool pool = config.imagenet_stem;
    add_stage("conv1", [this, pool](torch::Tensor x) {
      x = torch::relu(bn1(conv1(x)));
      return pool ? torch::max_pool2d(x, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1) : x;
    });
    // The residual stream: the stem's channels, then each stage's, made by the stage's shortcut
    // projection and every block's last convolution, tied by the blocks' additions.
    size_t stream = add_group("conv1", stem_width, false, "bn1", {});
    int64_t in = stem_width;
    int64_t dense_in = config.widths.front();
    for (size_t stage = 0; stage < config.blocks.size(); ++stage) {
      const std::string stage_name = "layer" + std::to_string(stage + 1);
      nn::Sequential layer;
      for (int64_t b = 0; b < config.blocks[stage]; ++b) {
        const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
        const std::string name = stage_name + "." + std::to_string(b);
        const int64_t planes = config.widths[stage];
        const int64_t dense_out = config.bottleneck ? planes * 4 : planes;
        const bool project = stride != 1 || dense_in != dense_out;
        const std::string last = name + (config.bottleneck ? ".conv3" : ".conv2");
        const std::string last_norm = name + (config.bottleneck ? ".bn3" : ".bn2");
        const int64_t out = project ? width_of(spec, last, dense_out) : in;
        const std::array<int64_t, 2> inner = {width_of(spec, name + ".conv1", planes),
                                              width_of(spec, name + ".conv2", planes)};
        ResidualBlock block(in, out, stride, config.bottleneck, project, inner);
        layer->push_back(block);
        add_reader(stream, name + ".conv1", 1);
        if (project) add_reader(stream, name + ".downsample.0", 1);
        add_group(name + ".conv1", inner[0], false, name + ".bn1", {{name + ".conv2", 1}});
        if (config.bottleneck)
          add_group(name + ".conv2", inner[1], false, name + ".bn2", {{name + ".conv3", 1}});
        if (project) {
          stream = add_group(last, out, false, last_norm, {});
          tie_producer(stream, name + ".downsample.0", name + ".downsample.1");
        } else {
          tie_producer(stream, last, last_norm);
        }
        add_stage({name}, [block](Values x) mutable -> Values { return {x.at(0), block->head(x.at(0))}; });
        add_stage({name + ".conv2", name + ".conv3", name + ".downsample"},
                  [block](Values x) mutable -> Values { return {block->tail(x.at(0), x.at(1))}; });
        in = out;
        dense_in = dense_out;
      }
      register_module(stage_name, layer);
    }
    fc = register_module("fc", nn::Linear(in, spec.num_classes));
    add_reader(stream, "fc", 1);
    add_stage("fc", [this](torch::Tensor x) { return fc(torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1)); });
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* c = module->as<nn::Conv2dImpl>()) {
        nn::init::kaiming_normal_(c->weight, /*a=*/0.0, torch::kFanOut, torch::kReLU);
      }
    }
  }

 private:
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  nn::Linear fc{nullptr};
};

// VGG-16 with batch norm, CIFAR style (Simonyan & Zisserman 2015; one linear classifier). A max-pool
// is skipped once the feature map is 1x1, so small inputs (28x28) work too.
class VggImpl : public ZooNetImpl {
 public:
  explicit VggImpl(const ZooSpec& spec) {
    const std::vector<int64_t> config = {64, 64,  -1,  128, 128, -1,  256, 256, 256,
                                         -1, 512, 512, 512, -1,  512, 512, 512, -1};
    int64_t in = spec.in_channels;
    int64_t size = spec.image_size;
    std::vector<std::pair<size_t, size_t>> groups;  // [begin, end) module ranges, one per conv
    std::vector<int64_t> widths;                    // each conv's outputs
    for (int64_t width : config) {
      if (width < 0) {
        if (size >= 2) {
          features->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
          size /= 2;
          groups.back().second = features->size();
        }
        continue;
      }
      const size_t begin = features->size();
      const std::string name = "features." + std::to_string(begin);
      const int64_t kept = width_of(spec, name, width);
      features->push_back(nn::Conv2d(nn::Conv2dOptions(in, kept, 3).padding(1)));
      features->push_back(nn::BatchNorm2d(kept));
      features->push_back(nn::ReLU(nn::ReLUOptions(/*inplace=*/true)));
      groups.emplace_back(begin, features->size());
      widths.push_back(kept);
      in = kept;
    }
    register_module("features", features);
    classifier = register_module("classifier", nn::Linear(in, spec.num_classes));
    // Each conv's channels, read by the next conv or, pooled to 1x1, by the classifier.
    for (size_t i = 0; i < groups.size(); ++i) {
      const std::string name = "features." + std::to_string(groups[i].first);
      const std::string reader =
          i + 1 < groups.size() ? "features." + std::to_string(groups[i + 1].first) : "classifier";
      add_group(name, widths[i], true, "features." + std::to_string(groups[i].first + 1), {{reader, 1}});
    }
    for (const auto& [begin, end] : groups) {
      add_stage("features." + std::to_string(begin), [this, begin = begin, end = end](torch::Tensor x) {
        auto first = features->begin();
        for (size_t i = begin; i < end; ++i) x = (first + static_cast<std::ptrdiff_t>(i))->forward(x);
        return x;
      });
    }
    add_stage("classifier", [this](torch::Tensor x) {
      return classifier(torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1));
    });
  }

 private:
  nn::Sequential features;
  nn::Linear classifier{nullptr};
};

// LeNet-300-100 (LeCun et al. 1998): two hidden fully connected layers.
class MlpImpl : public ZooNetImpl {
 public:
  explicit MlpImpl(const ZooSpec& spec) {
    const int64_t inputs = spec.in_channels * spec.image_size * spec.image_size;
    const int64_t hidden1 = width_of(spec, "fc1", 300);
    const int64_t hidden2 = width_of(spec, "fc2", 100);
    fc1 = register_module("fc1", nn::Linear(inputs, hidden1));
    fc2 = register_module("fc2", nn::Linear(hidden1, hidden2));
    fc3 = register_module("fc3", nn::Linear(hidden2, spec.num_classes));
    add_group("fc1", hidden1, true, "", {{"fc2", 1}});
    add_group("fc2", hidden2, true, "", {{"fc3", 1}});
    add_stage("fc1", [this](torch::Tensor x) { return torch::relu(fc1(x.flatten(1))); });
    add_stage("fc2", [this](torch::Tensor x) { return torch::relu(fc2(x)); });
    add_stage("fc3", [this](torch::Tensor x) { return fc3(x); });
  }

 private:
  nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};

// LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling; inputs under 32x32 are padded by conv1.
class LeNet5Impl : public ZooNetImpl {
 public:
  explicit LeNet5Impl(const ZooSpec& spec) {
    const int64_t padding = spec.image_size < 32 ? 2 : 0;
    const int64_t after1 = (spec.image_size + 2 * padding - 4) / 2;
    const int64_t after2 = (after1 - 4) / 2;
    if (after2 < 1)
      throw UsageError("arch", "lenet5: images of " + std::to_string(spec.image_size) +
                                   " pixels are too small (need at least 12)");
    const int64_t c1 = width_of(spec, "conv1", 6);
    const int64_t c2 = width_of(spec, "conv2", 16);
    const int64_t f1 = width_of(spec, "fc1", 120);
    const int64_t f2 = width_of(spec, "fc2", 84);
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(spec.in_channels, c1, 5).padding(padding)));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(c1, c2, 5)));
    fc1 = register_module("fc1", nn::Linear(c2 * after2 * after2, f1));
    fc2 = register_module("fc2", nn::Linear(f1, f2));
    fc3 = register_module("fc3", nn::Linear(f2, spec.num_classes));
    add_group("conv1", c1, true, "", {{"conv2", 1}});
    add_group("conv2", c2, true, "", {{"fc1", after2 * after2}});  // flattened channel-major
    add_group("fc1", f1, true, "", {{"fc2", 1}});
    add_group("fc2", f2, true, "", {{"fc3", 1}});
    add_stage("conv1", [this](torch::Tensor x) { return torch::max_pool2d(torch::relu(conv1(x)), 2); });
    add_stage("conv2", [this](torch::Tensor x) { return torch::max_pool2d(torch::relu(conv2(x)), 2); });
    add_stage("fc1", [this](torch::Tensor x) { return torch::relu(fc1(x.flatten(1))); });
    add_stage("fc2", [this](torch::Tensor x) { return torch::relu(fc2(x)); });
    add_stage("fc3", [this](torch::Tensor x) { return fc3(x); });
  }

 private:
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};

// A Vision Transformer (Dosovitskiy et al. ICLR 2021) small enough to train on 2 cores in
// minutes: non-overlapping patches (a 4x4 grid below 64 pixels, else 8x8), a class token, learned
// positions, pre-norm encoder blocks of multi-head self-attention and a GELU MLP, a linear head.
// q, k, v and the output projection are separate Linear layers, each its own prunable layer.
// Channel pruning removes whole heads: a block may keep fewer heads than the model's width divides
// into, each of head_dim features.
struct AttentionImpl : nn::Module {
  AttentionImpl(int64_t dim, int64_t heads, int64_t head_dim) : heads_(heads), head_dim_(head_dim) {
    q = register_module("q", nn::Linear(dim, heads * head_dim));
    k = register_module("k", nn::Linear(dim, heads * head_dim));
    v = register_module("v", nn::Linear(dim, heads * head_dim));
    proj = register_module("proj", nn::Linear(heads * head_dim, dim));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t batch = x.size(0), tokens = x.size(1);
    auto split = [&](const torch::Tensor& t) {
      return t.view({batch, tokens, heads_, head_dim_}).transpose(1, 2);
    };
    const torch::Tensor scores =
        torch::matmul(split(q(x)), split(k(x)).transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim_));
    const torch::Tensor mixed = torch::matmul(torch::softmax(scores, -1), split(v(x)));
    return proj(mixed.transpose(1, 2).reshape({batch, tokens, heads_ * head_dim_}));
  }
  int64_t heads_, head_dim_;
  nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, proj{nullptr};
};
TORCH_MODULE(Attention);

struct FeedForwardImpl : nn::Module {
  FeedForwardImpl(int64_t dim, int64_t hidden) {
    fc1 = register_module("fc1", nn::Linear(dim, hidden));
    fc2 = register_module("fc2", nn::Linear(hidden, dim));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x))); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(FeedForward);

struct EncoderBlockImpl : nn::Module {
  EncoderBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t hidden) {
    norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({dim})));
    attn = register_module("attn", Attention(dim, heads, head_dim));
    norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({dim})));
    ffn = register_module("mlp", FeedForward(dim, hidden));
  }
  // The block in two halves (attention, MLP), each a residual step on one tensor.
  torch::Tensor attend(const torch::Tensor& x) { return x + attn(norm1(x)); }
  torch::Tensor mlp(const torch::Tensor& x) { return x + ffn(norm2(x)); }
  nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  FeedForward ffn{nullptr};
};
TORCH_MODULE(EncoderBlock);

class VitImpl : public ZooNetImpl {
 public:
  explicit VitImpl(const ZooSpec& spec) {
    const int64_t dim = 64, depth = 4, heads = 4, head_dim = dim / heads, hidden = 128;
    const int64_t grid = spec.image_size < 64 ? 4 : 8;
    const int64_t patch = spec.image_size / grid;
    if (patch < 1)
      throw UsageError("arch", "vit: images of " + std::to_string(spec.image_size) +
                                   " pixels are too small (need at least 4)");
    patch_embed = register_module("patch_embed",
                                  nn::Conv2d(nn::Conv2dOptions(spec.in_channels, dim, patch).stride(patch)));
    cls_token = register_parameter("cls_token", torch::randn({1, 1, dim}) * 0.02);
    pos_embed = register_parameter("pos_embed", torch::randn({1, grid * grid + 1, dim}) * 0.02);
    add_stage({"patch_embed", "pos_embed"}, [this](Values v) -> Values {
      torch::Tensor x = v.at(0);
      x = patch_embed(x).flatten(2).transpose(1, 2);
      return {torch::cat({cls_token.expand({x.size(0), 1, x.size(2)}), x}, 1) + pos_embed};
    });
    for (int64_t b = 0; b < depth; ++b) {
      const std::string name = "blocks." + std::to_string(b);
      const std::string attn = name + ".attn";
      // Channel groups: the block's heads, and the hidden units of its MLP.
      const int64_t kept_heads = width_of(spec, attn, heads);
      const int64_t kept_hidden = width_of(spec, name + ".mlp.fc1", hidden);
      add_block_group(attn, kept_heads, head_dim, {attn + ".q", attn + ".k", attn + ".v"}, {attn + ".proj"});
      add_group(name + ".mlp.fc1", kept_hidden, true, "", {{name + ".mlp.fc2", 1}});
      EncoderBlock block(dim, kept_heads, head_dim, kept_hidden);
      blocks->push_back(block);
      add_stage({name + ".norm1", name + ".attn"},
                [block](Values x) mutable -> Values { return {block->attend(x.at(0))}; });
      add_stage({name + ".norm2", name + ".mlp"},
                [block](Values x) mutable -> Values { return {block->mlp(x.at(0))}; });
    }
    register_module("blocks", blocks);
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({dim})));
    head = register_module("head", nn::Linear(dim, spec.num_classes));
    add_stage("head", [this](torch::Tensor x) { return head(norm(x.select(1, 0))); });
  }
  std::vector<std::string> position_embeddings() const override { return {"pos_embed"}; }

 private:
  nn::Conv2d patch_embed{nullptr};
  torch::Tensor cls_token, pos_embed;
  nn::ModuleList blocks;
  nn::LayerNorm norm{nullptr};
  nn::Linear head{nullptr};
};

ResNetConfig cifar_resnet(int64_t depth) {
  const int64_t n = (depth - 2) / 6;  // He et al. 2016, section 4.2: 6n+2 layers
  return {{n, n, n}, {16, 32, 64}, /*bottleneck=*/false, /*imagenet_stem=*/false};
}

}  // namespace

namespace {

std::shared_ptr<ZooNetImpl> make_architecture(const ZooSpec& spec) {
  if (spec.in_channels <= 0 || spec.image_size <= 0 || spec.num_classes <= 0) {
    throw UsageError("arch", spec.arch + ": channels, image size and classes must be positive");
  }
  const bool large = spec.image_size >= 64;  // ImageNet-style stem only where it leaves room
  if (spec.arch == "mlp") return std::make_shared<MlpImpl>(spec);
  if (spec.arch == "lenet5") return std::make_shared<LeNet5Impl>(spec);
  if (spec.arch == "resnet20") return std::make_shared<ResNetImpl>(cifar_resnet(20), spec);
  if (spec.arch == "resnet32") return std::make_shared<ResNetImpl>(cifar_resnet(32), spec);
  if (spec.arch == "resnet56") return std::make_shared<ResNetImpl>(cifar_resnet(56), spec);
  if (spec.arch == "vgg16") return std::make_shared<VggImpl>(spec);
  if (spec.arch == "vit") return std::make_shared<VitImpl>(spec);
  if (spec.arch == "resnet18") {
    return std::make_shared<ResNetImpl>(ResNetConfig{{2, 2, 2, 2}, {64, 128, 256, 512}, false, large}, spec);
  }
  if (spec.arch == "resnet50") {
    return std::make_shared<ResNetImpl>(ResNetConfig{{3, 4, 6, 3}, {64, 128, 256, 512}, true, large}, spec);
  }
  throw UsageError(
      "arch", "unknown architecture '" + spec.arch +
                  "' (known: mlp, lenet5, resnet20, resnet32, resnet56, vgg16, resnet18, resnet50, vit)");
}

}  // namespace

std::shared_ptr<ZooNetImpl> make_zoo_model(const ZooSpec& spec) {
  auto model = make_architecture(spec);
  for (const auto& [name, width] : spec.widths) {
    const auto& groups = model->channel_groups();
    if (std::none_of(groups.begin(), groups.end(), [&](const ChannelGroup& g) { return g.name == name; }))
      throw UsageError("widths", spec.arch + " has no channel group " + name);
  }
  return model;
}

}  // namespace rdprune
