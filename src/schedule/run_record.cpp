#include "rdprune/run_record.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/atomic_file.h"
#include "rdprune/distortion.h"
#include "rdprune/error.h"

namespace rdprune {
namespace fs = std::filesystem;
namespace {

nlohmann::json eval_json(const EvalResult& eval) {
  return {{"top1", eval.top1}, {"top5", eval.top5}, {"loss", eval.loss}, {"samples", eval.samples}};
}

EvalResult eval_from_json(const nlohmann::json& json) {
  EvalResult eval;
  eval.top1 = json.at("top1").get<double>();
  eval.top5 = json.at("top5").get<double>();
  // A loss that was not finite is written as null (JSON has no NaN).
  eval.loss = json.at("loss").is_null() ? std::nan("") : json["loss"].get<double>();
  eval.samples = json.at("samples").get<int64_t>();
  return eval;
}

nlohmann::json optional_json(const std::optional<double>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json();
}

nlohmann::json cost_json(const RoundCost& cost) {
  return {{"seconds", cost.seconds},
          {"allocation_seconds", cost.allocation_seconds},
          {"finetune_seconds", cost.finetune_seconds},
          {"train_steps", cost.train_steps},
          {"judge_train_steps", cost.judge_train_steps},
          {"forward_samples", cost.forward_samples},
          {"reused_seconds", cost.reused_seconds},
          {"reused_forward_samples", cost.reused_forward_samples}};
}

// A round recorded before costs were kept has its curve time as the allocation's and no counts.
RoundCost cost_from_json(const nlohmann::json& round) {
  RoundCost cost;
  if (!round.contains("cost")) {
    cost.allocation_seconds = round.value("curve_seconds", 0.0);
    return cost;
  }
  const nlohmann::json& json = round["cost"];
  cost.seconds = json.at("seconds").get<double>();
  cost.allocation_seconds = json.at("allocation_seconds").get<double>();
  cost.finetune_seconds = json.at("finetune_seconds").get<double>();
  cost.train_steps = json.at("train_steps").get<int64_t>();
  cost.judge_train_steps = json.at("judge_train_steps").get<int64_t>();
  cost.forward_samples = json.at("forward_samples").get<int64_t>();
  cost.reused_seconds = json.value("reused_seconds", 0.0);  // absent before caches kept costs
  cost.reused_forward_samples = json.value("reused_forward_samples", int64_t{0});
  return cost;
}

RefineStep step_from_json(const nlohmann::json& entry) {
  RefineStep step;
  step.start = entry.at("start").get<std::string>();
  step.pass = entry.at("pass").get<int64_t>();
  step.trust = entry.value("trust", 0.0);
  step.exchanged = entry.value("exchanged", 0.0);
  step.measured = entry.at("measured").get<double>();
  step.recovery_steps = entry.value("recovery_steps", int64_t{0});
  step.judged_by = entry.value("judged_by", std::string("distortion"));
  step.sparsity = entry.at("sparsity").get<double>();
  step.chosen = entry.at("chosen").get<bool>();
  return step;
}

RoundResult round_from_json(const nlohmann::json& json) {
  RoundResult round;
  round.round = json.at("round").get<int64_t>();
  round.sparsity_target = json.at("sparsity_target").get<double>();
  round.sparsity_achieved = json.at("sparsity_achieved").get<double>();
  round.flops_sparsity_achieved = json.at("flops_sparsity_achieved").get<double>();
  if (json.at("predicted_distortion").is_number())
    round.predicted_distortion = json["predicted_distortion"].get<double>();
  if (json.contains("measured_distortion") && json["measured_distortion"].is_number())
    round.measured_distortion = json["measured_distortion"].get<double>();
  // Rounds of the first version call the steps "refine".
  for (const auto& entry : json.value("steps", json.value("refine", nlohmann::json::array())))
    round.steps.push_back(step_from_json(entry));
  round.pruned = eval_from_json(json.at("pruned"));
  round.finetuned = eval_from_json(json.at("finetuned"));
  round.cost = cost_from_json(json);
  round.finetune_from_judgement = json.value("finetune_from_judgement", false);
  round.resumed = true;
  return round;
}

// The leaf keys ("allocator.metric") whose values differ between two settings records.
void differing_keys(const nlohmann::json& now, const nlohmann::json& then, const std::string& prefix,
                    std::vector<std::string>& keys) {
  for (const auto& [key, value] : now.items()) {
    const std::string path = prefix + key;
    if (!then.contains(key)) {
      keys.push_back(path);
    } else if (value.is_object() && then[key].is_object()) {
      differing_keys(value, then[key], path + ".", keys);
    } else if (value != then[key]) {
      keys.push_back(path);
    }
  }
  for (const auto& [key, value] : then.items()) {  // set then, not now
    if (!now.contains(key)) keys.push_back(prefix + key);
  }
}

nlohmann::json read_settings(const fs::path& path) {
  nlohmann::json recorded;
  try {
    recorded = nlohmann::json::parse(read_file(path.string()));
  } catch (const nlohmann::json::exception&) {
    throw Error(path.string() + ": not a JSON settings record");
  }
  if (!recorded.is_object()) throw Error(path.string() + ": not a JSON settings record");
  if (recorded.contains("threads") && !recorded["threads"].is_number_integer())
    throw Error(path.string() + ": threads: expected a thread count");
  return recorded;
}

}  // namespace

nlohmann::json settings_json(const PipelineOptions& o) {
  const TrainOptions& f = o.finetune;
  nlohmann::json json = {{"schema", kSettingsSchema},
                         {"method", o.method},
                         {"sparsity", o.rd.sparsity_target},
                         {"budget", to_string(o.rd.budget)},
                         {"rounds", o.rounds},
                         {"schedule", o.schedule},
                         {"allow_empty", o.rd.allow_empty},
                         {"calib_size", o.calib_size},
                         {"synthetic", o.synthetic},
                         {"seed", o.seed},
                         {"bn_recalibrate", o.bn_recalibrate},
                         {"eval_limit", o.eval_limit},
                         {"finetune",
                          {{"steps", f.steps},
                           {"batch_size", f.batch_size},
                           {"optimizer", f.optimizer},
                           {"lr", f.lr},
                           {"momentum", f.momentum},
                           {"weight_decay", f.weight_decay},
                           {"schedule", f.schedule},
                           {"warmup_fraction", f.warmup_fraction},
                           {"pad", f.augmentation.pad},
                           {"flip", f.augmentation.flip}}}};
  // Recorded only when set, as the first version did, so that its baseline runs resume.
  if (o.holdout > 0) json["holdout"] = o.holdout;
  if (!o.rd.keep_dense.empty()) json["keep_dense"] = o.rd.keep_dense;
  if (!o.extra_finetune_steps.empty()) json["extra_finetune_steps"] = o.extra_finetune_steps;
  if (o.allocator.criterion != "magnitude") json["criterion"] = o.allocator.criterion;
  if (o.load.prune_embeddings) json["prune_embeddings"] = true;
  if (o.allocator.granularity != "weight") json["granularity"] = o.allocator.granularity;
  if (o.method == "owl")
    json["owl"] = {{"threshold", o.allocator.owl.threshold}, {"lambda", o.allocator.owl.lambda}};
  if (o.method == "alphapruning")
    json["alphapruning"] = {{"epsilon", o.allocator.alpha.epsilon}, {"fit", o.allocator.alpha.fit}};
  if (o.method != "rd" && o.method != "select") return json;
  const AllocatorSettings& a = o.allocator;
  json["allocator"] = {
      {"preset", o.preset},    {"min_sparsity", o.rd.min_sparsity}, {"max_sparsity", o.rd.max_sparsity},
      {"solver", o.rd.solver}, {"metric", a.curves.metric},         {"levels", a.curves.levels},
      {"tail", a.curves.tail}, {"estimator", a.curves.estimator},   {"bn_aware", a.curves.recalibrate_bn},
      {"refine", a.refine}};
  if (o.method == "select") {
    const SelectSettings& s = a.select;
    json["allocator"]["select"] = {{"pool", s.pool},
                                   {"recovery_steps", s.recovery_steps},
                                   {"judge_by", s.judge_by},
                                   {"judge_size", s.judge_size},
                                   {"exchanges", s.exchanges}};
  }
  return json;
}

void check_settings(const fs::path& dir, const PipelineOptions& options, Network& network,
                    const nlohmann::json& data, Sink* sink) {
  nlohmann::json settings = settings_json(options);
  settings["model"] = fingerprint(network);
  settings["data"] = data;
  // The thread count changes the order of torch's sums, and so the last bits of fine-tuned weights:
  // recorded, and named when a rerun differs, but a rerun on another machine may still resume.
  const int threads = at::get_num_threads();
  const fs::path path = dir / "settings.json";
  if (!fs::exists(path)) {
    if (fs::exists(dir / "round-1")) {
      throw UsageError("out_dir", dir.string() +
                                      " holds rounds of a run whose settings are not on record; use another "
                                      "directory, or remove it to start over");
    }
    settings["threads"] = threads;
    write_file_atomic(path.string(), settings.dump(1) + "\n");
    return;
  }
  nlohmann::json recorded = read_settings(path);
  if (recorded.contains("threads")) {
    if (recorded["threads"] != threads) {
      note(sink, fmt::format("note: {} was started with {} threads and resumes with {}; rounds run now may "
                             "differ in the last bits from a run with one thread count",
                             dir.string(), recorded["threads"].get<int64_t>(), threads));
    }
    recorded.erase("threads");
  }
  if (!recorded.contains("schema")) {
    // The first version: its rd was the search from every method's plans, today's select.
    if (recorded.value("method", "") == "rd")
      throw UsageError("out_dir", dir.string() +
                                      " holds an rd run of the first version, whose rd searched from "
                                      "every method's plans (now select); use another directory");
    settings.erase("schema");
  }
  for (const auto& [key, what] : {std::pair<const char*, const char*>{"model", "from another model"},
                                  {"data", "on other data (images, labels or normalisation)"}}) {
    if (!recorded.contains(key)) {
      settings.erase(key);
    } else if (recorded[key] != settings[key]) {
      throw UsageError("out_dir", dir.string() + " holds a run started " + what +
                                      "; use another directory, or remove it to start over");
    }
  }
  // The preset names where the values came from; the values decide, and they are compared.
  for (nlohmann::json* record : {&settings, &recorded}) {
    if (record->contains("allocator") && (*record)["allocator"].is_object())
      (*record)["allocator"].erase("preset");
  }
  std::vector<std::string> keys;
  differing_keys(settings, recorded, "", keys);
  if (keys.empty()) return;
  std::string differs;
  for (const auto& key : keys) differs += (differs.empty() ? "" : ", ") + key;
  throw UsageError("out_dir", dir.string() + " holds a run started with other settings (" + differs +
                                  "); use another directory, or remove it to start over");
}

std::string model_file(const Network& network) {
  return network.format() == "torchscript" ? "model.ts.pt" : "model.pt";
}

nlohmann::json round_json(const RoundResult& round) {
  nlohmann::json json = {{"round", round.round},
                         {"sparsity_target", round.sparsity_target},
                         {"sparsity_achieved", round.sparsity_achieved},
                         {"flops_sparsity_achieved", round.flops_sparsity_achieved},
                         {"pruned", eval_json(round.pruned)},
                         {"finetuned", eval_json(round.finetuned)},
                         {"cost", cost_json(round.cost)},
                         {"finetune_from_judgement", round.finetune_from_judgement},
                         {"predicted_distortion", optional_json(round.predicted_distortion)},
                         {"measured_distortion", optional_json(round.measured_distortion)}};
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& step : round.steps) {
    steps.push_back({{"start", step.start},
                     {"pass", step.pass},
                     {"trust", step.trust},
                     {"exchanged", step.exchanged},
                     {"measured", step.measured},
                     {"recovery_steps", step.recovery_steps},
                     {"judged_by", step.judged_by},
                     {"sparsity", step.sparsity},
                     {"chosen", step.chosen}});
  }
  json["steps"] = steps;
  return json;
}

std::string rerun_remedy(const fs::path& dir) {
  return "; remove " + dir.string() + " to run that round again";
}

RoundResult resumed_round(const fs::path& dir, int64_t index, double target) {
  const std::string remedy = rerun_remedy(dir);
  const fs::path metrics = dir / "metrics.json";
  const fs::path plan = dir / "plan.json";
  const fs::path curves = dir / "curves.json";
  RoundResult round;
  try {
    round = round_from_json(nlohmann::json::parse(read_file(metrics.string())));
  } catch (const nlohmann::json::exception& e) {
    throw Error(metrics.string() + ": damaged (" + e.what() + ")" + remedy);
  }
  // Figures no run writes: the record was edited or belongs to another round.
  const auto fraction = [](double value) { return value >= 0 && value <= 1; };
  const bool plausible = round.round == index && std::abs(round.sparsity_target - target) < 1e-9 &&
                         fraction(round.sparsity_achieved) && fraction(round.flops_sparsity_achieved) &&
                         fraction(round.pruned.top1) && fraction(round.pruned.top5) &&
                         fraction(round.finetuned.top1) && fraction(round.finetuned.top5) &&
                         round.pruned.samples >= 0 && round.finetuned.samples >= 0;
  if (!plausible)
    throw Error(metrics.string() + ": holds figures no run of round " + std::to_string(index) + " writes" +
                remedy);
  if (!fs::exists(plan)) throw Error(plan.string() + ": missing" + remedy);
  try {
    plan_from_json(read_file(plan.string()), plan.string());
    if (fs::exists(curves)) curves_from_json(read_file(curves.string()), curves.string());
  } catch (const Error& e) {
    throw Error(e.what() + remedy);
  }
  return round;
}

}  // namespace rdprune
