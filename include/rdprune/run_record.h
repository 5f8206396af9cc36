// A run directory on disk: settings.json (every resolved value that decides the results) and one
// round-N directory per finished round (plan.json, curves, the model, metrics.json and the test
// images' outcomes). A rerun resumes only a directory whose settings match, and names what differs.
#pragma once

#include "rdprune/layering.h"

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "rdprune/network.h"
#include "rdprune/pipeline.h"

namespace rdprune {

RDPRUNE_LAYER(5, "schedule");

// In every round's directory: the final model's per-image top-1 outcomes on the test split.
inline constexpr const char* kTestHitsFile = "test_hits.txt";
inline constexpr const char* kSettingsSchema = "rdprune.settings/2";

// Every resolved value of `options` that decides a run's results (not how fast it goes), under
// the keys settings.json records (docs/formats.md).
nlohmann::json settings_json(const PipelineOptions& options);

// Records the settings, the model's fingerprint and the data's (`data`) in `dir`, or checks them
// against those a previous run recorded there: a difference is a UsageError naming every key that
// differs ("allocator.metric"). A record of the first version (no schema) resumes for a baseline
// whose settings it matches; an rd run of that version was today's select and is refused.
void check_settings(const std::filesystem::path& dir, const PipelineOptions& options, Network& network,
                    const nlohmann::json& data, Sink* sink);

// "model.ts.pt" for a TorchScript network, "model.pt" for a checkpoint.
std::string model_file(const Network& network);

// A round's metrics.json.
nlohmann::json round_json(const RoundResult& round);

// A finished round's figures, its plan (and curves) checked on the way: a damaged record is named,
// with what to do, rather than carried into the run's report.
RoundResult resumed_round(const std::filesystem::path& dir, int64_t index, double target);

// What to do about a damaged record of the finished round in `dir`.
std::string rerun_remedy(const std::filesystem::path& dir);

}  // namespace rdprune
