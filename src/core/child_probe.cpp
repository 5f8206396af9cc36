#include "rdprune/child_probe.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>

#include "rdprune/error.h"

namespace rdprune {
namespace {

constexpr size_t kMaxReason = 4096;

[[noreturn]] void run_child(const std::function<std::string()>& attempt, int answer) {
  // The parent's handlers remove its temporary files; in the child the default action is right.
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) std::signal(signal, SIG_DFL);
  // What the attempt prints (a C library's or a sanitizer's report) is not the user's to read.
  const int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) {
    ::dup2(null, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
  }
  std::string reason;
  try {
    reason = attempt();
  } catch (const std::exception& e) {
    reason = e.what()[0] != '\0' ? e.what() : "an exception without a message";
  } catch (...) {
    reason = "an exception of an unknown kind";
  }
  // One byte for read (0) or refused (1), then the reason.
  const std::string message = (reason.empty() ? '\0' : '\1') + reason.substr(0, kMaxReason);
  size_t done = 0;
  while (done < message.size()) {
    const ssize_t wrote = ::write(answer, message.data() + done, message.size() - done);
    if (wrote <= 0 && errno != EINTR) ::_exit(3);
    if (wrote > 0) done += static_cast<size_t>(wrote);
  }
  ::_exit(0);
}

std::string read_all(int fd) {
  std::string text;
  char buffer[1024];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got > 0) text.append(buffer, static_cast<size_t>(got));
    if (got == 0 || (got < 0 && errno != EINTR)) return text;
  }
}

std::string how_it_ended(int status) {
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    const char* name = ::strsignal(signal);
    return "signal " + std::to_string(signal) + (name != nullptr ? std::string(", ") + name : "");
  }
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  return "status " + std::to_string(status);
}

}  // namespace

ChildReading read_in_child(const std::function<std::string()>& attempt) {
  int pipe_ends[2];
  if (::pipe(pipe_ends) != 0)
    throw Error(std::string("cannot make a pipe to a child: ") + std::strerror(errno));
  std::fflush(nullptr);  // nothing buffered is written twice
  const pid_t child = ::fork();
  if (child < 0) {
    ::close(pipe_ends[0]);
    ::close(pipe_ends[1]);
    throw Error(std::string("cannot start a process to read it in: ") + std::strerror(errno));
  }
  if (child == 0) {
    ::close(pipe_ends[0]);
    run_child(attempt, pipe_ends[1]);
  }
  ::close(pipe_ends[1]);
  const std::string message = read_all(pipe_ends[0]);
  ::close(pipe_ends[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR)
      throw Error(std::string("cannot wait for the reading process: ") + std::strerror(errno));
  }
  ChildReading result;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || message.empty()) {
    result.crashed = true;
    result.reason = how_it_ended(status);
    return result;
  }
  result.read = message[0] == '\0';
  result.reason = message.substr(1);
  return result;
}

}  // namespace rdprune
