#include "rdprune/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "rdprune/error.h"

namespace rdprune {
namespace {

std::string temporary_name(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

// The temporary files being written, for the signal handler to remove: fixed slots, since a handler
// may neither allocate nor lock.
constexpr int kSlots = 16;
constexpr size_t kPathBytes = 4096;
char pending_paths[kSlots][kPathBytes];
volatile std::sig_atomic_t pending[kSlots];
std::mutex slots_mutex;

// The slot now holding `tmp`, or -1 when none is free (that file is then left to a rerun).
int hold(const std::string& tmp) {
  const std::lock_guard<std::mutex> lock(slots_mutex);
  if (tmp.size() >= kPathBytes) return -1;
  for (int i = 0; i < kSlots; ++i) {
    if (pending[i]) continue;
    std::memcpy(pending_paths[i], tmp.c_str(), tmp.size() + 1);
    pending[i] = 1;
    return i;
  }
  return -1;
}

void release(int slot) {
  if (slot < 0) return;
  const std::lock_guard<std::mutex> lock(slots_mutex);
  pending[slot] = 0;
}

extern "C" void remove_pending_and_reraise(int signal) {
  for (int i = 0; i < kSlots; ++i) {
    if (pending[i]) ::unlink(pending_paths[i]);
  }
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

// Killed while writing, by a signal no handler sees: what a rerun finishes, it leaves whole and
// alone.
void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
    const pid_t owner = static_cast<pid_t>(std::stol(pid));
    if (owner != ::getpid() && ::kill(owner, 0) != 0 && errno == ESRCH) fs::remove(entry.path(), error);
  }
}

SignalRemovesFile::SignalRemovesFile(const std::string& path) : slot_(hold(path)) {}

SignalRemovesFile::~SignalRemovesFile() {
  release(slot_);
}

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

void check_regular_input(const std::string& path) {
  // A reader that seeks (a model's zip archive) cannot read a pipe, and would wait forever on one
  // that has no writer; a device has no end.
  if (std::filesystem::exists(path) && !std::filesystem::is_regular_file(path))
    throw Error(path + ": is not a regular file (a pipe, device or socket), expected a file");
}

void replace_file_atomic(const std::string& path,
                         const std::function<void(const std::string& tmp_path)>& write) {
  check_output_path(path);
  const std::string tmp = temporary_name(path);
  const int slot = hold(tmp);
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    release(slot);
    throw;
  }
  sync_file(tmp);
  const bool renamed = std::rename(tmp.c_str(), path.c_str()) == 0;
  const std::string reason = renamed ? "" : std::strerror(errno);
  if (!renamed) std::remove(tmp.c_str());
  release(slot);
  if (!renamed) throw Error(path + ": cannot rename temporary file into place: " + reason);
  remove_stale_temporaries(path);
}

void remove_temporary_files_on_signal() {
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction action {};
    action.sa_handler = remove_pending_and_reraise;
    sigemptyset(&action.sa_mask);
    ::sigaction(signal, &action, nullptr);
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
