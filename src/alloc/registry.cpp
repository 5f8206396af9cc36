// Methods by name, presets, and the settings' checks: the one place a name becomes an allocator.
#include "allocators.h"
#include "rdprune/baselines.h"
#include "rdprune/criterion.h"
#include "rdprune/error.h"
#include "rdprune/recovery.h"
#include "rdprune/text.h"

namespace rdprune {
namespace {

// The methods select's pool may hold: every allocator but select.
std::vector<std::string> pool_methods() {
  std::vector<std::string> names = {"rd"};
  names.insert(names.end(), baseline_methods().begin(), baseline_methods().end());
  return names;
}

// What channel plans do not take (docs/channels.md): weight criteria, and curves other than
// measured ones, a level at a time.
void validate_channel(const AllocatorSettings& settings) {
  if (settings.criterion != "magnitude")
    throw UsageError("criterion", "channel plans rank channels themselves; the criterion is for weights");
  const CurveOptions& curves = settings.curves;
  if (curves.estimator != "measured")
    throw UsageError("estimator", "channel curves are measured; the Taylor estimate is for weights");
  if (curves.level_batch != 1) throw UsageError("level_batch", "channel curves run one level at a time");
}

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {"default", "paper"};
  return names;
}

AllocatorSettings preset_settings(const std::string& preset) {
  AllocatorSettings settings;
  if (preset == "default") {
    // What measured best (docs/results.md, "Summary" and "More refinement passes"): KL distortion,
    // the geometric tail of levels, four refinement passes on the joint distortion.
    settings.curves.metric = "kl";
    settings.curves.tail = true;
    settings.refine = 4;
    return settings;
  }
  if (preset == "paper") {
    // Xu et al. ICCV 2023: mean squared output distortion, a uniform grid of levels, the DP alone.
    settings.curves.metric = "mse";
    settings.curves.tail = false;
    settings.curves.recalibrate_bn = false;
    settings.refine = 0;
    return settings;
  }
  require_one_of("preset", preset, preset_names(), "preset");
  return settings;  // not reached: the preset is one of preset_names()
}

const std::vector<std::string>& allocator_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> all = {"rd", "select"};
    for (const auto& baseline : baseline_methods()) all.push_back(baseline);
    all.push_back("owl");
    all.push_back("alphapruning");
    return all;
  }();
  return names;
}

bool uses_calibration(const std::string& method) {
  return method == "rd" || method == "select" || method == "owl";
}

void validate(const AllocatorSettings& settings) {
  validate(settings.curves);
  validate(settings.owl);
  validate(settings.alpha);
  check_criterion(settings.criterion);
  if (settings.refine < 0 || settings.refine > 20) throw UsageError("refine", "expected a count in [0, 20]");
  require_one_of("granularity", settings.granularity, {"weight", "channel"}, "granularity");
  if (settings.granularity == "channel") validate_channel(settings);
  const SelectSettings& select = settings.select;
  if (select.pool.empty()) throw UsageError("pool", "expected at least one method");
  for (const auto& method : select.pool) require_one_of("pool", method, pool_methods(), "method");
  require_distinct(select.pool, "pool");
  if (select.recovery_steps < 0 || select.recovery_steps > 100000)
    throw UsageError("recovery_steps", "expected a count in [0, 100000]");
  if (select.judge_by != "distortion" && !judged_by_labels(select.judge_by))
    throw UsageError("judge_by", "expected distortion, loss or error, got '" + select.judge_by + "'");
  if (select.judge_size < 0 || select.judge_size > 10000000)
    throw UsageError("judge_size", "expected a count in [0, 10000000]");
  if (select.exchanges < 0 || select.exchanges > 20)
    throw UsageError("exchanges", "expected a count in [0, 20]");
}

std::unique_ptr<Allocator> make_allocator(const std::string& method, const AllocatorSettings& settings) {
  if (settings.granularity == "channel") return make_channel_allocator(method, settings);
  require_one_of("method", method, allocator_names(), "method");
  if (method == "rd") return make_rd_allocator(settings);
  if (method == "select") return make_select_allocator(settings);
  if (method == "owl") return make_owl_allocator(settings.owl);
  if (method == "alphapruning") return make_alphapruning_allocator(settings.alpha);
  return make_baseline_allocator(method);
}

}  // namespace rdprune
