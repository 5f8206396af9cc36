// rdprune.curves/1 and rdprune.plan/1: round trips and every invalid input named clearly.
#include <cmath>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "rdprune/curves.h"
#include "rdprune/error.h"
#include "rdprune/plan.h"

namespace rdprune {
namespace {

CurveSet sample_curves() {
  CurveSet curves;
  curves.metric = "mse";
  curves.calibration = "fashion-mnist train[0:256]";
  curves.fingerprint = "abc";
  curves.levels = 4;
  LayerCurve layer;
  layer.name = "conv1";
  layer.weights = 10;
  layer.flops_per_weight = 784;
  for (double s : level_grid(4)) {
    layer.sparsity.push_back(s);
    layer.kept.push_back(kept_at(s, 10));
    layer.distortion.push_back(s * s);
  }
  curves.layers.push_back(layer);
  return curves;
}

std::string error_of(const std::string& text) {
  try {
    curves_from_json(text, "c.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Curves, GridAndKeptCounts) {
  EXPECT_EQ(level_grid(4), (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(level_grid(100).size(), 101u);
  EXPECT_EQ(kept_at(0.3, 10), 7);  // floor(0.3 * 10) = 3 despite 0.3's binary form
  EXPECT_EQ(kept_at(1.0, 10), 0);
  EXPECT_EQ(kept_at(0.25, 10), 8);
  EXPECT_EQ(levels_from(level_grid(4), 0.3), (std::vector<double>{0.3, 0.5, 0.75, 1}));
  EXPECT_THROW(level_grid(0), UsageError);
  // A one-weight level joins a grid whose last non-empty level keeps more than one weight.
  EXPECT_EQ(layer_levels(level_grid(4), 0, 10), (std::vector<double>{0, 0.25, 0.5, 0.75, 0.9, 1}));
  EXPECT_EQ(layer_levels(level_grid(10), 0, 10).size(), 11u);  // 0.9 already keeps one
  EXPECT_EQ(layer_levels(level_grid(4), 0.95, 20), (std::vector<double>{0.95, 1}));
  // The geometric tail: kept fraction halves after the grid's 0.75 (100 weights: 25 kept) while it
  // keeps more than one weight and fewer than the level before; then the one-weight level.
  std::vector<int64_t> kept;
  for (double level : layer_levels(level_grid(4), 0, 100, /*tail=*/true)) kept.push_back(kept_at(level, 100));
  EXPECT_EQ(kept, (std::vector<int64_t>{100, 75, 50, 25, 13, 7, 4, 2, 1, 0}));
  EXPECT_EQ(layer_levels(level_grid(4), 0, 3, /*tail=*/true), layer_levels(level_grid(4), 0, 3));
}

TEST(Curves, RoundTrip) {
  const CurveSet curves = sample_curves();
  const CurveSet back = curves_from_json(to_json(curves), "c.json");
  EXPECT_EQ(back.metric, "mse");
  EXPECT_EQ(back.fingerprint, "abc");
  ASSERT_EQ(back.layers.size(), 1u);
  EXPECT_EQ(back.layers[0].kept, curves.layers[0].kept);
  EXPECT_EQ(back.layers[0].distortion, curves.layers[0].distortion);
}

TEST(Curves, InvalidFilesAreNamedErrors) {
  auto json = nlohmann::json::parse(to_json(sample_curves()));
  auto with = [&](auto edit) {
    auto copy = json;
    edit(copy["layers"][0]);
    return error_of(copy.dump());
  };
  EXPECT_NE(with([](auto& l) { l["distortion"][2] = nullptr; }).find("distortion[2] is nan"),
            std::string::npos);
  EXPECT_NE(with([](auto& l) { l["distortion"][1] = -0.5; }).find("negative"), std::string::npos);
  EXPECT_NE(with([](auto& l) { l["sparsity"][2] = 0.1; }).find("not increasing"), std::string::npos);
  EXPECT_NE(with([](auto& l) { l["kept"][1] = 9; }).find("kept[1]"), std::string::npos);
  EXPECT_NE(with([](auto& l) { l["kept"].erase(0); }).find("entries"), std::string::npos);
  EXPECT_NE(with([](auto& l) { l["sparsity"][4] = 1.5; }).find("outside [0, 1]"), std::string::npos);
  EXPECT_NE(error_of("{\"schema\": \"other/1\"}").find("schema"), std::string::npos);
  EXPECT_NE(error_of("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(to_json(sample_curves()).substr(0, 60)).find("c.json"), std::string::npos);
  auto no_layers = json;
  no_layers.erase("layers");
  EXPECT_NE(error_of(no_layers.dump()).find("malformed"), std::string::npos);
  auto twice = json;
  twice["layers"].push_back(json["layers"][0]);
  EXPECT_NE(error_of(twice.dump()).find("layer 'conv1' appears twice"), std::string::npos);
}

TEST(Plan, RoundTripAndDerivedFigures) {
  Plan plan;
  plan.method = "rd";
  plan.budget = BudgetKind::kFlops;
  plan.sparsity_target = 0.5;
  plan.predicted_distortion = 0.25;
  plan.layers = {{"conv1", 100, 40, 10}, {"fc", 50, 10, 1}};
  const Plan back = plan_from_json(to_json(plan), "p.json");
  EXPECT_EQ(back.method, "rd");
  EXPECT_EQ(back.budget, BudgetKind::kFlops);
  EXPECT_EQ(back.kept_weights(), 50);
  EXPECT_DOUBLE_EQ(back.sparsity_achieved(), 1.0 - 50.0 / 150.0);
  EXPECT_DOUBLE_EQ(back.flops_sparsity_achieved(), 1.0 - 410.0 / 1050.0);
  EXPECT_DOUBLE_EQ(*back.predicted_distortion, 0.25);
  const auto json = nlohmann::json::parse(to_json(plan));
  EXPECT_DOUBLE_EQ(json["layers"][0]["sparsity"].get<double>(), 0.6);
  // A plan that meets its target reads as meeting it: 6147 of 61470 weights pruned is 0.1 exactly,
  // where 1 - 55323 / 61470 is an ulp below.
  Plan tenth;
  tenth.sparsity_target = 0.1;
  tenth.layers = {{"conv1", 150, 150, 1}, {"fc1", 61320, 55173, 1}};
  EXPECT_GE(tenth.sparsity_achieved(), tenth.sparsity_target);
  EXPECT_GE(tenth.flops_sparsity_achieved(), tenth.sparsity_target);
}

TEST(Plan, MismatchedModelsAndBadValuesAreErrors) {
  Plan plan;
  plan.method = "rd";
  plan.sparsity_target = 0.5;
  plan.layers = {{"conv1", 100, 40, 10}};
  std::vector<LayerInfo> model(1);
  model[0].name = "conv1";
  model[0].weights = 100;
  EXPECT_NO_THROW(check_plan_matches(plan, model, "p.json"));
  model[0].name = "features.0";
  EXPECT_THROW(check_plan_matches(plan, model, "p.json"), Error);
  model.push_back(model[0]);
  EXPECT_THROW(check_plan_matches(plan, model, "p.json"), Error);
  plan.layers[0].kept = 101;
  EXPECT_THROW(plan_from_json(to_json(plan), "p.json"), Error);
  plan.layers = {{"conv1", 100, 40, 10}, {"conv1", 100, 40, 10}};
  EXPECT_THROW(plan_from_json(to_json(plan), "p.json"), Error);
  EXPECT_THROW(check_sparsity_target(1.0, "--sparsity"), UsageError);
  EXPECT_THROW(check_sparsity_target(-0.01, "--sparsity"), UsageError);
  EXPECT_EQ(budget_for(BudgetKind::kParams, 0.9, 270608, 0), 27060);
}

TEST(Plan, NoLayerIsEmptiedUnlessThePlanOrTheUserAllowsIt) {
  Plan plan;
  plan.method = "rd";
  plan.sparsity_target = 0.5;
  plan.layers = {{"conv1", 100, 0, 10}, {"fc", 50, 10, 1}};
  std::vector<LayerInfo> model(2);
  model[0].name = "conv1";
  model[0].weights = 100;
  model[1].name = "fc";
  model[1].weights = 50;
  try {
    check_no_layer_emptied(plan, model, /*allow_empty=*/false, "p.json");
    FAIL() << "a plan that empties conv1 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer conv1 would keep none of its 100 weights"),
              std::string::npos);
  }
  EXPECT_NO_THROW(check_no_layer_emptied(plan, model, /*allow_empty=*/true, "p.json"));
  // A layer that has no weights left loses nothing more.
  model[0].sparsity = 1.0;
  EXPECT_NO_THROW(check_no_layer_emptied(plan, model, /*allow_empty=*/false, "p.json"));
  model[0].sparsity = 0.0;
  // A plan made with --allow-empty says so, and keeps saying so through its file.
  EXPECT_EQ(nlohmann::json::parse(to_json(plan)).count("allow_empty"), 0u);
  plan.allow_empty = true;
  const Plan back = plan_from_json(to_json(plan), "p.json");
  EXPECT_TRUE(back.allow_empty);
  EXPECT_NO_THROW(check_no_layer_emptied(back, model, /*allow_empty=*/false, "p.json"));
}

}  // namespace
}  // namespace rdprune
