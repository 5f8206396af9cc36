// rdprune: layer-adaptive pruning by rate-distortion optimisation.
// Exit codes: 0 success, 2 usage error, 1 any other error; always a one-line reason on stderr.
#include <algorithm>
#include <cstdlib>
#include <iostream>

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"

namespace {

constexpr const char* kVersion = "0.1.0";

std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  const size_t end = text.find_last_not_of(' ');
  return end == std::string::npos ? text : text.substr(0, end + 1);
}

bool wants_json(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json") return true;
  }
  return false;
}

// An option given an empty value ("--sparsity ''", "--sparsity="): CLI11 reads it as the number 0,
// and no option here means anything by an empty string. Empty when there is none.
std::string empty_value(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) continue;
    const size_t equals = arg.find('=');
    if (equals != std::string::npos && equals + 1 == arg.size()) return arg.substr(0, equals);
    if (equals == std::string::npos && i + 1 < argc && argv[i + 1][0] == '\0') return arg;
  }
  return "";
}

// An option the command does not have, or one that takes a value followed by another option
// ("--out --json": CLI11 would take "--json" as the value and, for a path, write a file of that
// name). Checked before parsing, which would otherwise report a missing required option first.
// Empty when there is none.
std::string argument_error(const CLI::App& app, int argc, char** argv) {
  if (argc < 2) return "";
  const CLI::App* command = nullptr;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == argv[1]) command = sub;
  if (!command) return "";
  for (int i = 2; i < argc; ++i) {  // help asked for is given, whatever else the line holds
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") return "";
  }
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") continue;
    const CLI::Option* option = command->get_option_no_throw(arg.substr(0, arg.find('=')));
    if (!option) return "unknown option " + arg + " (see rdprune " + command->get_name() + " --help)";
    if (arg.find('=') == std::string::npos && option->get_expected_min() > 0 && i + 1 < argc &&
        std::string(argv[i + 1]).rfind("--", 0) == 0)
      return arg + ": expected a value, got the option " + argv[i + 1];
  }
  return "";
}

// A command started as one of several processes (torchrun sets WORLD_SIZE) that runs in one
// process only: the copies would each do the whole work and write the same files. The commands that
// take several processes have --dist-timeout. Empty when there is nothing wrong.
std::string one_process_error(const CLI::App& app, int argc, char** argv) {
  const char* world_size = std::getenv("WORLD_SIZE");
  if (argc < 2 || world_size == nullptr || std::string(world_size).empty() || std::string(world_size) == "1")
    return "";
  std::string several;  // the commands that take several processes
  bool refused = false;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_option_no_throw("--dist-timeout") != nullptr) {
      several += (several.empty() ? "" : ", ") + sub->get_name();
    } else if (sub->get_name() == argv[1]) {
      refused = true;
    }
  }
  if (!refused) return "";
  return std::string("rdprune ") + argv[1] + " runs in one process, but the launcher started " + world_size +
         " (WORLD_SIZE); under torchrun: " + several;
}

// `--help --json`: the command's flags as data, for scripts and front ends; the top level lists
// the commands instead.
nlohmann::json help_json(const CLI::App& app) {
  nlohmann::json out{{"command", app.get_parent() ? app.get_name() : "rdprune"},
                     {"description", app.get_description()}};
  if (!app.get_parent()) {
    out["version"] = kVersion;
    nlohmann::json commands = nlohmann::json::array();
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      commands.push_back({{"name", sub->get_name()}, {"description", sub->get_description()}});
    out["commands"] = commands;
  }
  nlohmann::json options = nlohmann::json::array();
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_lnames().empty()) continue;  // no option here is short-only
    nlohmann::json entry{{"name", "--" + option->get_lnames().front()},
                         {"description", option->get_description()},
                         {"takes_value", option->get_expected_max() > 0},
                         {"required", option->get_required()}};
    if (option->get_expected_max() > 0) entry["type"] = option->get_type_name();
    if (!option->get_default_str().empty()) entry["default"] = option->get_default_str();
    options.push_back(entry);
  }
  out["options"] = options;
  return out;
}

int fail(int code, const std::string& reason, bool json) {
  const std::string line = one_line(reason);
  std::cerr << "rdprune: error: " << line << std::endl;
  if (json) std::cout << nlohmann::json{{"error", line}, {"exit_code", code}}.dump() << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rdprune: prune trained networks layer-adaptively by rate-distortion optimisation"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("rdprune ") + kVersion);
  rdprune::cli::register_info(app);
  rdprune::cli::register_train(app);
  rdprune::cli::register_eval(app);
  rdprune::cli::register_curves(app);
  rdprune::cli::register_allocate(app);
  rdprune::cli::register_prune(app);
  rdprune::cli::register_finetune(app);
  rdprune::cli::register_run(app);
  rdprune::cli::register_compare(app);
  rdprune::cli::register_additivity(app);
  rdprune::remove_temporary_files_on_signal();  // Ctrl-C leaves no half-written file behind
  const bool json = wants_json(argc, argv);
  const auto commands = app.get_subcommands([](CLI::App*) { return true; });
  const bool known_command = std::any_of(commands.begin(), commands.end(), [&](CLI::App* sub) {
    return argc > 1 && sub->get_name() == argv[1];
  });
  if (argc > 1 && argv[1][0] != '-' && !known_command) {
    std::string known;
    for (const auto* sub : commands) known += (known.empty() ? "" : ", ") + sub->get_name();
    return fail(2, std::string("unknown command '") + argv[1] + "' (commands: " + known + ")", json);
  }
  if (const std::string option = empty_value(argc, argv); !option.empty())
    return fail(2, option + ": expected a value, got an empty one", json);
  if (const std::string reason = argument_error(app, argc, argv); !reason.empty())
    return fail(2, reason, json);
  if (const std::string reason = one_process_error(app, argc, argv); !reason.empty())
    return fail(2, reason, json);
  try {
    app.parse(argc, argv);
    return 0;
  } catch (const CLI::CallForHelp& e) {
    if (!json) return app.exit(e);
    const auto parsed = app.get_subcommands();  // the command whose --help was asked for, if any
    std::cout << help_json(parsed.empty() ? app : *parsed.front()).dump() << std::endl;
    return 0;
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    if (!json) return app.exit(e);
    std::cout << nlohmann::json{{"version", kVersion}}.dump() << std::endl;
    return 0;
  } catch (const CLI::ParseError& e) {
    return fail(2, e.what(), json);
  } catch (const rdprune::UsageError& e) {
    // The library names options by their fields; the user knows them by their flags.
    if (e.option().empty()) return fail(2, e.what(), json);
    return fail(2, rdprune::cli::flag_of(e.option()) + ": " + e.reason(), json);
  } catch (const rdprune::Error& e) {
    return fail(1, e.what(), json);
  } catch (const c10::Error& e) {
    return fail(1, e.what_without_backtrace(), json);
  } catch (const std::exception& e) {
    return fail(1, e.what(), json);
  }
}
