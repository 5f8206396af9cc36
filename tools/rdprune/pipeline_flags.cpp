#include "pipeline_flags.h"

#include <filesystem>

#include "common.h"
#include "rdprune/error.h"
#include "rdprune/text.h"

namespace rdprune::cli {

void add_pipeline_flags(CLI::App& command, PipelineFlags& flags, PipelineGrid* grid) {
  auto& o = flags.options;
  o.finetune.lr = 0.01;
  if (grid != nullptr) {
    command.add_option("--rounds", grid->rounds,
                       "Pruning rounds (1 = one-shot, default); comma-separated: every cell at each");
    command.add_option("--finetune-steps", grid->finetune_steps,
                       "Fine-tuning steps per round (default 0); comma-separated: every cell at each");
    command.add_option("--seed", grid->seeds,
                       "Seed (default 0); comma-separated: every cell with each, summarised over them");
  } else {
    command.add_option("--rounds", o.rounds, "Pruning rounds (1 = one-shot, default)");
    command.add_option("--finetune-steps", o.finetune.steps, "Fine-tuning steps per round (default 0)");
    add_seed_option(command, o.seed, "Seed (default 0)");
  }
  command.add_option("--schedule", o.schedule, "Round targets: geometric 1-(1-a)^r (default) | linear");
  command.add_option("--budget", flags.budget, "params|flops (default params)");
  command.add_option("--granularity", o.allocator.granularity,
                     "weight (default) | channel: whole channels go, every round's model is physically "
                     "smaller (methods rd, uniform, global, slimming; zoo and TorchScript models)");
  command.add_option("--min-sparsity", o.rd.min_sparsity, "rd, select: every layer at least this sparse");
  command.add_option("--max-sparsity", o.rd.max_sparsity, "rd, select: every layer at most this sparse");
  command.add_option("--keep-dense", flags.keep_dense,
                     "Comma-separated layers to leave as they are, for every method");
  command.add_flag("--allow-empty", o.rd.allow_empty, "Allow a layer to lose every weight");
  add_load_flags(command, o.load);
  add_dist_flags(command, flags.dist);
  add_bn_stats_flag(command, o.finetune.bn_stats);
  command.add_option("--solver", o.rd.solver, "rd, select: dp (default) | lagrange");
  command.add_option("--calib-size", o.calib_size,
                     "Calibration samples: first N training images (default 256)");
  command.add_option("--holdout", o.holdout,
                     "The last N training images: held out of every method's fine-tuning; select judges "
                     "plans on them (default 0: none held out, select judges on the training images "
                     "after the calibration ones)");
  add_preset_flag(command, o.preset);
  add_curve_flags(command, o.allocator.curves, "rd, select: ");
  command.add_option("--refine", o.allocator.refine,
                     "rd: passes re-measuring curves around rd's plan and solving again; select: around "
                     "the best start (default 4; --preset paper: 0)");
  command.add_flag("--bn-aware-curves", o.allocator.curves.recalibrate_bn,
                   "rd, select: re-estimate batch-norm statistics at every curve level before measuring");
  command.add_option("--pool", flags.pool,
                     "select: the methods whose plans start the search, comma-separated (default "
                     "rd,global,lamp,erk)");
  command.add_option("--judge", flags.judge,
                     "select: how plans are judged: distortion (as pruned, default) or recovered:N (after N "
                     "fine-tuning steps)");
  command.add_option("--judge-by", o.allocator.select.judge_by,
                     "select: distortion (against the unpruned network's outputs, default), loss or error "
                     "(1 - top-1) on the judging images");
  command.add_option("--judge-size", o.allocator.select.judge_size,
                     "select: training images after the calibration ones (or held out) that plans are "
                     "judged on (default 0: the calibration images)");
  command.add_option("--exchanges", o.allocator.select.exchanges,
                     "select: rounds in which every ordered pair of layers trades a share of kept weights "
                     "after the refinement passes (default 0)");
  command.add_flag("--synthetic", o.synthetic, "rd, select: zero-data calibration with N(0,1) inputs");
  add_method_flags(command, o.allocator);
  command.add_flag("--no-cache", flags.no_cache, "rd, select: do not cache curves");
  command.add_option("--cache-dir", flags.cache_dir,
                     "rd, select: curve cache (default <out-dir>/cache; compare: each cell's own)");
  command.add_option("--finetune-lr", o.finetune.lr, "Fine-tuning peak learning rate (default 0.01)");
  command.add_option("--optimizer", o.finetune.optimizer, "Fine-tuning optimizer sgd|adamw (default sgd)");
  command.add_flag("--bn-recalibrate", o.bn_recalibrate, "Re-estimate batch-norm statistics after pruning");
  command.add_option("--eval-limit", o.eval_limit, "Evaluate on the first N test samples only");
}

namespace {

// --judge distortion | recovered:N: the fine-tuning steps before each judgement.
int64_t parse_judge(const std::string& text) {
  if (text == "distortion") return 0;
  const std::string prefix = "recovered:";
  if (text.rfind(prefix, 0) == 0) {
    const int64_t steps = parse_count(text.substr(prefix.size()), "--judge");
    if (steps > 0) return steps;
  }
  throw UsageError("--judge", "expected distortion or recovered:N with N > 0, got '" + text + "'");
}

}  // namespace

void finish_pipeline_flags(const CLI::App& command, PipelineFlags& flags, const std::string& out_dir) {
  auto& o = flags.options;
  apply_preset(command, o.preset, o.allocator.curves, &o.allocator.refine);
  o.rd.budget = parse_budget(flags.budget);
  if (o.rd.budget == BudgetKind::kLatency)
    throw UsageError("--budget", "latency budgets are for channel plans (allocate --granularity channel)");
  if (!flags.keep_dense.empty()) o.rd.keep_dense = split_list(flags.keep_dense, "--keep-dense");
  o.allocator.select.pool = split_list(flags.pool, "--pool");
  o.allocator.select.recovery_steps = parse_judge(flags.judge);
  o.finetune.seed = o.seed;
  flags.group = join_processes(flags.dist);
  o.group = flags.group.get();
  o.finetune.group = o.group;
  o.allocator.curves.group = o.group;
  o.sink = o.group->is_root() ? stderr_sink() : nullptr;
  if (flags.no_cache) {
    o.allocator.curves.cache_dir.clear();
  } else {
    o.allocator.curves.cache_dir =
        flags.cache_dir.empty() ? (std::filesystem::path(out_dir) / "cache").string() : flags.cache_dir;
  }
}

}  // namespace rdprune::cli
