#include "pipeline_flags.h"

#include <filesystem>

#include "common.h"
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
  command.add_option("--min-sparsity", o.rd.min_sparsity, "rd: every layer at least this sparse");
  command.add_option("--max-sparsity", o.rd.max_sparsity, "rd: every layer at most this sparse");
  command.add_option("--keep-dense", flags.keep_dense,
                     "Comma-separated layers to leave as they are, for every method");
  command.add_flag("--allow-empty", o.rd.allow_empty, "Allow a layer to lose every weight");
  command.add_option("--solver", o.rd.solver, "rd: dp (default) | lagrange");
  command.add_option("--calib-size", o.calib_size,
                     "Calibration samples: first N training images (default 256)");
  command.add_option("--holdout", o.holdout,
                     "The last N training images: held out of every method's fine-tuning; rd judges "
                     "recovered plans on them (default 0: none held out, rd judges on training images)");
  add_curve_flags(command, o.curves, "rd: ");
  command.add_option("--refine", o.refine,
                     "rd: passes re-measuring curves around the plan and solving again (default 2)");
  command.add_option("--refine-from", flags.refine_from,
                     "rd: allocators whose plans compete with rd's own as the start of refinement, "
                     "comma-separated, or all (default) or none");
  command.add_option("--recovery-steps", flags.recovery_steps,
                     "rd: fine-tuning steps each candidate plan gets before refinement judges it; auto "
                     "(default): min(--finetune-steps, 100), 0: judge plans as pruned");
  command.add_option("--blends", flags.blends,
                     "rd: plans halfway between the best start and each next-best one that refinement "
                     "also judges; auto (default): 2 when plans are judged after recovery, else 0");
  command.add_option("--exchanges", flags.exchanges,
                     "rd: rounds in which refinement judges, for every ordered pair of layers, the plan "
                     "with a share of one layer's kept weights given to the other (a quarter, halved "
                     "after a round that finds nothing lower); auto (default): 2 when plans are judged "
                     "after recovery and a round judges at most 64 plans (8 layers or fewer), else 0");
  command.add_option("--judge-size", flags.judge_size,
                     "rd: training images after the calibration ones that plans are measured on; auto "
                     "(default): 1024 when plans are judged after recovery, 16384 when rounds are judged "
                     "along paths (--judge-at path), 0 when plans are judged as pruned; 0: the "
                     "calibration set");
  command.add_option("--judge-by", o.judge_by,
                     "rd: what plans judged on judging images or after recovery are judged by: distortion "
                     "(against the unpruned network's outputs), loss (cross-entropy on the judging images' "
                     "labels), error (1 - top-1 on them) or auto (default: error when rounds are judged "
                     "along paths after recovery on judging images, otherwise distortion)");
  command.add_option("--judge-at", o.judge_at,
                     "rd, in rounds before the last: judge each rule's plan at the round's target "
                     "(round) or at the final target, taking the chosen rule's plan at the round's "
                     "(final), or as final and then follow the best --paths rules through every later "
                     "round and take the rule whose path ends best (path); auto (default): with more than "
                     "one round and another rule than rd's own (--refine-from), path when plans are "
                     "judged after recovery, final when they are judged as pruned");
  command.add_option("--paths", flags.paths,
                     "rd with --judge-at path: how many of the rules judged best at the final target "
                     "are followed to the end; all (default): every rule");
  command.add_flag("--synthetic", o.synthetic, "rd: zero-data calibration with N(0,1) inputs");
  command.add_flag("--no-cache", flags.no_cache, "rd: do not cache curves");
  command.add_flag("--bn-aware-curves", o.curves.recalibrate_bn,
                   "rd: re-estimate batch-norm statistics at every curve level before measuring");
  command.add_option("--cache-dir", flags.cache_dir, "rd: curve cache (default <out-dir>/cache)");
  command.add_option("--finetune-lr", o.finetune.lr, "Fine-tuning peak learning rate (default 0.01)");
  command.add_option("--optimizer", o.finetune.optimizer, "Fine-tuning optimizer sgd|adamw (default sgd)");
  command.add_flag("--bn-recalibrate", o.bn_recalibrate, "Re-estimate batch-norm statistics after pruning");
  command.add_option("--eval-limit", o.eval_limit, "Evaluate on the first N test samples only");
}

void finish_pipeline_flags(PipelineFlags& flags, const std::string& out_dir) {
  auto& o = flags.options;
  o.rd.budget = parse_budget(flags.budget);
  if (!flags.keep_dense.empty()) o.rd.keep_dense = split_list(flags.keep_dense, "--keep-dense");
  if (flags.refine_from == "none") {
    o.refine_from.clear();
  } else if (flags.refine_from != "all") {
    o.refine_from = split_list(flags.refine_from, "--refine-from");
  }
  if (flags.recovery_steps != "auto") {
    o.recovery_steps = parse_count(flags.recovery_steps, "--recovery-steps");
  }
  if (flags.blends != "auto") o.blends = parse_count(flags.blends, "--blends");
  if (flags.exchanges != "auto") o.exchanges = parse_count(flags.exchanges, "--exchanges");
  if (flags.paths != "all") o.paths = parse_count(flags.paths, "--paths");
  if (flags.judge_size != "auto") o.judge_size = parse_count(flags.judge_size, "--judge-size");
  o.finetune.seed = o.seed;
  if (flags.no_cache) {
    o.curves.cache_dir.clear();
  } else {
    o.curves.cache_dir =
        flags.cache_dir.empty() ? (std::filesystem::path(out_dir) / "cache").string() : flags.cache_dir;
  }
}

}  // namespace rdprune::cli
