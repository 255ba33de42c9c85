#pragma once
// The real nexusd binary (NEXUSD_BINARY) as a child process, and the /proc helpers the process-level tests
// (shutdown, faults) use to watch it and its embedded PostgreSQL.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"

extern char** environ;

namespace nexus::testing {

using Clock = std::chrono::steady_clock;

/// The file's contents; "" when it cannot be read. A /proc file of a process that exits while it is read fails
/// the read (ESRCH), which libstdc++ throws from the stream buffer whatever the stream's exception mask: the
/// process is gone, not the test.
inline std::string ReadFile(const std::string& path) {
  try {
    std::ifstream f(path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  } catch (const std::ios_base::failure&) {
    return "";
  }
}

/// A nexusd child process with stdout+stderr in a log file. The destructor SIGKILLs it (and its process
/// group) if it is still running, so a failing test never leaves it behind; PR_SET_PDEATHSIG covers a
/// crashing test binary.
class NexusdProcess {
 public:
  NexusdProcess(std::vector<std::string> args, std::string log_path) : log_path_(std::move(log_path)) {
    std::vector<std::string> env;  // our environment minus NEXUS_* (flags alone decide the config)
    for (char** e = environ; e && *e; ++e) {
      if (std::strncmp(*e, "NEXUS_", 6) != 0) env.emplace_back(*e);
    }
    args.insert(args.begin(), NEXUSD_BINARY);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }
  ~NexusdProcess() {
    if (pid_ > 0 && !exit_status_) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }
  NexusdProcess(const NexusdProcess&) = delete;
  NexusdProcess& operator=(const NexusdProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::string Log() const { return ReadFile(log_path_); }

  /// Non-blocking: has it exited? Sets exit_status().
  bool Exited() {
    if (exit_status_) return true;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) exit_status_ = st;
    return exit_status_.has_value();
  }
  std::optional<int> exit_status() const { return exit_status_; }

  /// Waits for the "nexusd serving" log line and reads the bound ports from it; false on exit or timeout.
  bool WaitServing(Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    static const std::regex kServing(R"re("msg":"nexusd serving".*"grpc":"[^"]*:(\d+)".*"http":"[^"]*:(\d+)")re");
    while (Clock::now() < deadline) {
      std::smatch m;
      const std::string log = Log();
      if (std::regex_search(log, m, kServing)) {
        grpc_port_ = std::stoi(m[1]);
        http_port_ = std::stoi(m[2]);
        return true;
      }
      if (Exited()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  /// Sends `sig` and waits (bounded) for the exit; returns the wait status or nullopt on timeout.
  std::optional<int> SignalAndWait(int sig, Clock::duration timeout) {
    ::kill(pid_, sig);
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (Exited()) return exit_status_;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }

 private:
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

inline std::string DescribeStatus(std::optional<int> st) {
  if (!st) return "did not exit in time";
  if (WIFEXITED(*st)) return "exit " + std::to_string(WEXITSTATUS(*st));
  if (WIFSIGNALED(*st)) return "killed by signal " + std::to_string(WTERMSIG(*st));
  return "status " + std::to_string(*st);
}

/// The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...); '\0' when the process does not exist.
inline char ProcessState(const std::string& proc_dir, long* ppid = nullptr) {
  const std::string stat = ReadFile(proc_dir + "/stat");
  const auto rp = stat.rfind(')');
  if (rp == std::string::npos || rp + 2 >= stat.size()) return '\0';
  std::istringstream rest(stat.substr(rp + 2));
  char state = '\0';
  long parent = 0;
  rest >> state >> parent;
  if (ppid) *ppid = parent;
  return state;
}

/// Running (a zombie waiting for its reaper counts as gone).
inline bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  const char state = ProcessState("/proc/" + std::to_string(pid));
  return state != '\0' && state != 'Z' && state != 'X';
}

/// pg_ctl stop returns once postmaster.pid is gone; the postmaster itself exits a moment later.
inline bool WaitGone(pid_t pid, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  while (ProcessAlive(pid)) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

/// The postmaster pid recorded in <pgdata>/postmaster.pid (0 when the file is absent).
inline pid_t PostmasterPid(const std::string& pgdata) {
  std::ifstream f(pgdata + "/postmaster.pid");
  long pid = 0;
  if (!(f >> pid)) return 0;
  return static_cast<pid_t>(pid);
}

/// Pids of processes that belong to the cluster in `pgdata`: the postmaster (its command line names the
/// directory) and anything whose parent is `postmaster` (backends, checkpointer, ...).
inline std::vector<pid_t> PostgresProcesses(const std::string& pgdata, pid_t postmaster) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    long ppid = 0;
    const char state = ProcessState(entry.path().string(), &ppid);
    if (state == '\0' || state == 'Z' || state == 'X') continue;
    std::string cmdline = ReadFile(entry.path().string() + "/cmdline");
    for (auto& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    bool match = cmdline.find("postgres") != std::string::npos && cmdline.find(pgdata) != std::string::npos;
    if (!match && postmaster > 0) match = ppid == postmaster;
    if (match) out.push_back(pid);
  }
  return out;
}

/// Kills whatever is left of the cluster in `pgdata` (test failure path only).
inline void KillCluster(const std::string& pgdata) {
  const pid_t pm = PostmasterPid(pgdata);
  if (pm > 0 && ProcessAlive(pm)) {
    ::kill(pm, SIGQUIT);
    for (int i = 0; i < 100 && ProcessAlive(pm); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (pid_t p : PostgresProcesses(pgdata, pm)) ::kill(p, SIGKILL);
}

/// A private temp dir under /tmp (the postgres user must be able to reach it when we run as root);
/// removed at the end, after stopping any cluster left in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    KillCluster(path_ + "/pgdata");
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline bool WaitReady(int http_port, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    try {
      if (HttpGet(http_port, "/readyz").status == 200) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace nexus::testing
