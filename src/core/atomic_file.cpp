#include "rdprune/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "rdprune/error.h"

namespace rdprune {
namespace {

std::string temporary_name(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void check_output_path(const std::string& path) {
  const std::filesystem::path target(path);
  if (target.has_parent_path() && !std::filesystem::is_directory(target.parent_path())) {
    throw Error(path + ": directory " + target.parent_path().string() + " does not exist");
  }
  if (std::filesystem::is_directory(target)) {
    throw Error(path + ": is a directory, expected a file path");
  }
  // Renaming over a device, pipe or socket would replace it with a regular file.
  if (std::filesystem::exists(target) && !std::filesystem::is_regular_file(target)) {
    throw Error(path + ": exists and is not a regular file");
  }
}

void replace_file_atomic(const std::string& path,
                         const std::function<void(const std::string& tmp_path)>& write) {
  check_output_path(path);
  const std::string tmp = temporary_name(path);
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  sync_file(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename temporary file into place: " + reason);
  }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  replace_file_atomic(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path + ": cannot open for writing: " + std::strerror(errno));
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.flush();
    if (!out) throw Error(path + ": write failed: " + std::strerror(errno));
  });
}

std::string read_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) throw Error(path + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace rdprune
