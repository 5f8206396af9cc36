#include "harness.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "fixtures.h"

namespace rdprune::fuzz {
namespace fs = std::filesystem;

const fs::path& scratch() {
  static const testing::TempDir dir;
  static const fs::path path(dir.path());
  return path;
}

std::string put(const fs::path& path, const uint8_t* data, size_t size) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path.string();
}

void put_text(const fs::path& path, const std::string& text) {
  put(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

std::string text_of(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

namespace {

// A finding: what the tool would show a user is not one line of rdprune's own.
[[noreturn]] void finding(const Target& target, const std::string& what) {
  std::fprintf(stderr, "fuzz target %s: %s\n", target.name.c_str(), what.c_str());
  std::abort();
}

}  // namespace

const Target* find_target(const std::string& name) {
  for (const auto& target : targets())
    if (target.name == name) return &target;
  return nullptr;
}

std::string run_input(const Target& target, const uint8_t* data, size_t size) {
  std::string message;
  try {
    target.run(data, size);
  } catch (const Error& e) {
    message = e.what();
  } catch (const UsageError& e) {
    message = e.what();
  } catch (const std::exception& e) {
    finding(target, std::string("an exception that is not rdprune's: ") + e.what());
  }
  if (message.find('\n') != std::string::npos) finding(target, "a message of several lines: " + message);
  return message;
}

}  // namespace rdprune::fuzz
