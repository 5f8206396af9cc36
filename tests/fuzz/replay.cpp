// fuzz_replay: the fuzz targets without libFuzzer.
//   fuzz_replay seeds DIR            writes every target's seeds into DIR/<target>/
//   fuzz_replay run TARGET PATH...   runs each file (or each file in a directory) through TARGET
//   fuzz_replay check REGRESSIONS    writes the seeds to a temporary directory and runs every
//                                    target on its seeds (each must read) and on
//                                    REGRESSIONS/<target>/ (the CI test)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fixtures.h"
#include "targets.h"

namespace fs = std::filesystem;
using rdprune::fuzz::Target;

namespace {

std::vector<fs::path> inputs_under(const fs::path& path) {
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::recursive_directory_iterator(path))
      if (entry.is_regular_file()) files.push_back(entry.path());
  } else if (fs::is_regular_file(path)) {
    files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Runs every input under `path`; with `valid`, an input the reader refuses is an error too.
size_t replay(const Target& target, const fs::path& path, bool valid = false) {
  size_t count = 0;
  for (const auto& file : inputs_under(path)) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string error =
        rdprune::fuzz::run_input(target, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (valid && !error.empty()) {
      std::fprintf(stderr, "%s: seed %s refused: %s\n", target.name.c_str(), file.string().c_str(),
                   error.c_str());
      std::exit(1);
    }
    ++count;
  }
  return count;
}

void write_seeds(const fs::path& dir) {
  for (const auto& target : rdprune::fuzz::targets()) {
    fs::create_directories(dir / target.name);
    target.seed((dir / target.name).string());
  }
}

int usage() {
  std::fprintf(stderr, "usage: fuzz_replay seeds DIR | run TARGET PATH... | check REGRESSIONS\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string mode = argv[1];
  if (mode == "seeds") {
    write_seeds(argv[2]);
    return 0;
  }
  if (mode == "run") {
    const Target* target = rdprune::fuzz::find_target(argv[2]);
    if (target == nullptr) return usage();
    size_t count = 0;
    for (int i = 3; i < argc; ++i) count += replay(*target, argv[i]);
    std::printf("%s: %zu inputs, no finding\n", target->name.c_str(), count);
    return 0;
  }
  if (mode != "check") return usage();
  rdprune::testing::TempDir seeds;
  write_seeds(seeds.path());
  for (const auto& target : rdprune::fuzz::targets()) {
    const size_t seeded = replay(target, fs::path(seeds.path()) / target.name, /*valid=*/true);
    const size_t regressions = replay(target, fs::path(argv[2]) / target.name);
    if (seeded == 0) {
      std::fprintf(stderr, "%s: no seeds\n", target.name.c_str());
      return 1;
    }
    std::printf("%s: %zu seeds, %zu regression inputs, no finding\n", target.name.c_str(), seeded,
                regressions);
  }
  return 0;
}
