// The library names options by their fields ("judge_size", "finetune.lr"); the CLI by its flags.
#include <map>

#include "common.h"

namespace rdprune::cli {

std::string flag_of(const std::string& option) {
  if (option.rfind("--", 0) == 0) return option;  // named by its flag already
  // Fields whose flag is not their name with dashes.
  static const std::map<std::string, std::string> renamed = {
      {"sparsity_target", "--sparsity"},
      {"finetune.lr", "--finetune-lr"},
      {"finetune.steps", "--finetune-steps"},
      {"recovery_steps", "--judge"},
      {"out_dir", "--out-dir"},
      {"resolution", "--dp-resolution"},
      {"max_memory_mib", "--max-memory"},
      {"warmup_fraction", "--warmup"},
      {"name", "--dataset"},  // DatasetOptions::name
      {"seeds", "--seed"},    // CompareOptions::seeds: --seed takes a comma-separated list
  };
  if (const auto it = renamed.find(option); it != renamed.end()) return it->second;
  std::string flag = "--";
  for (const char c : option.substr(option.rfind('.') == std::string::npos ? 0 : option.rfind('.') + 1))
    flag += c == '_' ? '-' : c;
  return flag;
}

}  // namespace rdprune::cli
