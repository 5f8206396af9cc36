// Shared plumbing of the CLI commands: flags that several commands take, turning them into
// validated option structs, and output. No algorithms live here.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "rdprune/allocator.h"
#include "rdprune/dataset.h"
#include "rdprune/distortion.h"
#include "rdprune/network.h"
#include "rdprune/process_group.h"
#include "rdprune/sink.h"
#include "rdprune/text.h"
#include "rdprune/train.h"

namespace rdprune::cli {

// Flags every command takes.
struct CommonFlags {
  bool json = false;
  int threads = 0;  // 0 = all cores
};

// Flags of the commands that run over several processes (torchrun).
struct DistFlags {
  double timeout = 300;  // seconds: the rendezvous and every collective
};
void add_dist_flags(CLI::App& command, DistFlags& flags);
// --bn-stats mean|rank0 (TrainOptions::bn_stats), for the commands that train.
void add_bn_stats_flag(CLI::App& command, std::string& bn_stats);
// The processes the launcher started (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), joined; one
// process without them.
std::unique_ptr<ProcessGroup> join_processes(const DistFlags& flags);

// Flags that select and shape a dataset.
struct DataFlags {
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  std::string mean;
  std::string std;
  int64_t image_size = 0;
  int64_t channels = 0;
  std::string input_shape;
  int64_t num_classes = 0;
  int64_t synthetic_size = 1024;
  uint64_t seed = 0;
};

void add_common_flags(CLI::App& command, CommonFlags& flags);
// --seed N: a whole number >= 0, parsed as --seed everywhere (a plain unsigned option would take
// "-1" as 2^64 - 1). The help shows the value already in `seed` as the default.
CLI::Option* add_seed_option(CLI::App& command, uint64_t& seed, const std::string& description);
// Optimizer flags of train and finetune; the help shows the defaults already in `options`.
void add_optimizer_flags(CLI::App& command, TrainOptions& options);
void add_data_flags(CLI::App& command, DataFlags& flags, bool dataset_required);
// How curves are measured (--levels, --metric, --plain, --max-memory), shared by every command that
// measures them; `scope` starts each help line ("rd: " where other methods ignore the flags).
void add_curve_flags(CLI::App& command, CurveOptions& options, const std::string& scope);

// --criterion, and the flags of owl and alphapruning (rdprune/layerwise_rules.h).
void add_method_flags(CLI::App& command, AllocatorSettings& settings);

// The first `size` training images of the dataset `flags` names, as calibration images, and a line
// that describes them (for curves files).
Dataset calibration_images(const DataFlags& flags, const Network& network, int64_t size,
                           std::string& description);
// Gives `network` the criterion `name`: wanda measures its input norms on `calibration`, which
// must then be real images (null: refused, naming `why`).
void use_criterion(Network& network, const std::string& name, const Dataset* calibration,
                   const std::string& why);

// --preset NAME (rdprune/allocator.h: default | paper).
void add_preset_flag(CLI::App& command, std::string& preset);
// Expands `preset` into `curves` (and `refine`, where the command has it), keeping every value
// given on `command`'s line: the flags given win over the preset.
void apply_preset(const CLI::App& command, const std::string& preset, CurveOptions& curves,
                  int64_t* refine = nullptr);

// The sink the library reports progress through: stderr, bars redrawn in place on a terminal.
Sink* stderr_sink();

// Applies --threads (default: every core; OpenMP would otherwise use one).
void apply_threads(const CommonFlags& flags);

// The dataset options for `flags`. A model trained on the same dataset lends its recorded
// normalisation unless --mean/--std override it.
DatasetOptions dataset_options(const DataFlags& flags, const ModelMeta* model = nullptr);

// --device DEVICE into `device` (cpu | cuda | cuda:N); without the flag, default_device(), resolved
// once the command line is parsed.
void add_device_flag(CLI::App& command, torch::Device& device);
// cuda:LOCAL_RANK where CUDA is available (modulo the devices there are), else cpu.
torch::Device default_device();
// "cpu", "cuda" (cuda:LOCAL_RANK) or "cuda:N"; UsageError naming --device when it is not one or
// the device does not exist.
torch::Device parse_device(const std::string& text);

// --prune-embeddings: embeddings become prunable layers, and --device (LoadOptions).
void add_load_flags(CLI::App& command, LoadOptions& options);

// Loads --model and checks it can take the dataset's samples (shape, classes).
std::unique_ptr<Network> load_model(const std::string& path, const LoadOptions& options);
void check_model_fits(Network& network, const Dataset& data, const std::string& path = {});
// Throws Error naming `path` when the model has no prunable layer.
void require_prunable_layers(const Network& network, const std::string& path);

// Prints the command's result: the JSON object on stdout with --json, else `human` on stdout.
void emit(const CommonFlags& flags, const nlohmann::json& result, const std::string& human);

// `value` as a JSON number, or null when it is NaN or infinite (JSON has neither).
nlohmann::json finite_or_null(double value);

// A flag and the path it names.
struct PathFlag {
  std::string flag;
  std::string path;
};

// Refuses an output that names one of the command's inputs or another of its outputs (the same
// file by any path, or the same path before it exists): writing it would destroy what the command
// reads or writes. Empty paths are flags not given.
void check_outputs_distinct(const std::vector<PathFlag>& inputs, const std::vector<PathFlag>& outputs);

// `message` with `path: ` in front unless it names the file there already.
std::string naming_file(const std::string& path, const std::string& message);

// The flag of a library option named by its field ("judge_size" -> "--judge-size"); a flag is
// returned as it is.
std::string flag_of(const std::string& option);

// Rejects values outside [low, high] with a UsageError naming the flag.
void require_range(const std::string& flag, double value, double low, double high);

// Where caches live by default: $XDG_CACHE_HOME/rdprune, else ~/.cache/rdprune, else a temporary
// directory.
std::string default_cache_dir();

}  // namespace rdprune::cli
