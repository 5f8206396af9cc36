// Each command registers its subcommand, flags and callback on the application.
#pragma once

#include <CLI/CLI.hpp>

namespace rdprune::cli {

void register_info(CLI::App& app);
void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_curves(CLI::App& app);
void register_allocate(CLI::App& app);
void register_prune(CLI::App& app);
void register_finetune(CLI::App& app);
void register_run(CLI::App& app);
void register_compare(CLI::App& app);
void register_additivity(CLI::App& app);

}  // namespace rdprune::cli
