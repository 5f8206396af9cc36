// Atomic file output: write to a temporary file beside the target, then rename into place, so a
// reader never sees a half-written artifact and an interrupted run leaves the old file intact.
#pragma once

#include <functional>
#include <string>

namespace rdprune {

// Throws rdprune::Error naming `path` unless a file can be written there: its directory exists and
// it is not a directory, device, pipe or socket. Commands check their outputs before the work.
void check_output_path(const std::string& path);

// Writes `contents` to `path` atomically. Throws rdprune::Error naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& contents);

// Calls `write(tmp_path)` to produce the file under a temporary name in the same directory, then
// renames it to `path`. The temporary file is removed if `write` throws. Then removes `path`'s
// temporary files left by processes that no longer run (`<path>.tmp.<pid>`, from a SIGKILL).
void replace_file_atomic(const std::string& path,
                         const std::function<void(const std::string& tmp_path)>& write);

// Removes `path`'s temporary files (`<path>.tmp.<pid>`) whose process no longer runs.
void remove_stale_temporaries(const std::string& path);

// A temporary file the caller writes itself (not through replace_file_atomic), which the signal
// handlers below remove while this object lives.
class SignalRemovesFile {
 public:
  explicit SignalRemovesFile(const std::string& path);
  ~SignalRemovesFile();
  SignalRemovesFile(const SignalRemovesFile&) = delete;
  SignalRemovesFile& operator=(const SignalRemovesFile&) = delete;

 private:
  int slot_;
};

// Installs handlers for SIGINT, SIGTERM and SIGHUP that remove the temporary files being written
// and then let the signal take its default course (the process ends as it would have). For main().
void remove_temporary_files_on_signal();

// Reads a whole file, or a pipe to its end (`--plan <(...)`). Throws rdprune::Error naming the path
// if it cannot be read.
std::string read_file(const std::string& path);

// Refuses an existing input that is not a regular file (a pipe, device or socket) with an Error
// naming it; a missing path passes, for the reader to name as missing.
void check_regular_input(const std::string& path);

}  // namespace rdprune
