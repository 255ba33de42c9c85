#include "storage/embedded_postgres.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "common/hash.h"
#include "common/log.h"
#include "storage/detail/pg.h"

namespace fs = std::filesystem;

namespace nexus::storage {
namespace {

bool IsExecutable(const fs::path& p) { return ::access(p.c_str(), X_OK) == 0; }

bool HasServerBinaries(const fs::path& dir) {
  return IsExecutable(dir / "initdb") && IsExecutable(dir / "pg_ctl") && IsExecutable(dir / "postgres");
}

struct UserIds {
  uid_t uid;
  gid_t gid;
  std::string home;
};

UserIds LookupUser(const std::string& name) {
  struct passwd* pw = ::getpwnam(name.c_str());
  if (!pw) {
    throw std::runtime_error("nexusd runs as root, and PostgreSQL refuses to run as root, but there is no '" + name +
                             "' user to run it as. Install the PostgreSQL server package (it creates the user), "
                             "run nexusd as a normal user, or pass --database-url.");
  }
  return {pw->pw_uid, pw->pw_gid, pw->pw_dir ? pw->pw_dir : "/"};
}

/// fork + setsid (so a Ctrl-C on our terminal does not reach PostgreSQL directly: we stop it ourselves)
/// + drop to `user` when set + exec. Output goes to `log_path` (appended). Returns the exit status.
int Spawn(const std::vector<std::string>& argv, const std::string& user, const std::string& log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  UserIds ids{0, 0, "/"};
  if (!user.empty()) ids = LookupUser(user);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    ::setsid();
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (!user.empty()) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(ids.gid) != 0 || ::setuid(ids.uid) != 0) _exit(126);
      ::setenv("HOME", ids.home.c_str(), 1);
      ::setenv("USER", user.c_str(), 1);
    }
    ::execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("waitpid failed: ") + std::strerror(errno));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void ChownTree(const fs::path& root, uid_t uid, gid_t gid) {
  if (::lchown(root.c_str(), uid, gid) != 0) {
    throw std::runtime_error("cannot hand " + root.string() + " to the postgres user: " + std::strerror(errno));
  }
  if (!fs::is_directory(root)) return;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (::lchown(entry.path().c_str(), uid, gid) != 0) {
      throw std::runtime_error("cannot hand " + entry.path().string() +
                               " to the postgres user: " + std::strerror(errno));
    }
  }
}

/// As root: the postgres user must be able to reach its data dir. nexusd never changes the modes of
/// directories outside its data dir (a checkout under /root would open /root to everyone): it says which
/// ancestor is in the way and what would fix it.
void CheckTraversable(const fs::path& dir, uid_t uid, gid_t gid) {
  std::vector<fs::path> chain;
  for (fs::path p = dir.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) chain.push_back(p);
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    struct stat st {};
    if (::stat(it->c_str(), &st) != 0) continue;
    const bool can = (st.st_uid == uid && (st.st_mode & S_IXUSR)) || (st.st_gid == gid && (st.st_mode & S_IXGRP)) ||
                     (st.st_mode & S_IXOTH);
    if (can) continue;
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw std::runtime_error(
        "nexusd runs as root, so its embedded PostgreSQL runs as the postgres user, which cannot reach the data "
        "dir " +
        dir.string() + ": " + it->string() + " (mode " + mode +
        ") does not let it search. nexusd does "
        "not change modes outside its data dir. Choose a --data-dir the postgres user can reach (for example "
        "under /var/lib), run nexusd as a normal user, or grant search yourself: chmod o+x " +
        it->string());
  }
}

/// Exclusive advisory lock on <data dir>/nexusd.lock for as long as this process runs the embedded cluster;
/// the file names the holder's pid. flock is released by the kernel when the process dies (kill -9
/// included), and the descriptor is close-on-exec so PostgreSQL, which we fork, never inherits it.
int LockDataDir(const std::string& data_dir) {
  const std::string path = data_dir + "/nexusd.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw std::runtime_error("cannot open " + path + " to lock the data dir: " + std::strerror(errno) +
                             ". Pass --data-dir with a writable directory, or --database-url.");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {0};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK) {
      throw std::runtime_error("the data dir " + data_dir + " is in use by another nexusd (pid " +
                               (holder.empty() ? std::string("unknown") : holder) +
                               "); this process did not touch its PostgreSQL. Stop that nexusd, or give this one "
                               "its own --data-dir (or a --database-url).");
    }
    throw std::runtime_error("cannot lock " + path + ": " + std::strerror(err));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    log::Warn("could not write the pid into the data dir lock file", {{"path", path}, {"cause", std::strerror(errno)}});
  }
  return fd;
}

std::string ReadTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  const size_t from = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(from));
  std::string out(size - from, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

}  // namespace

std::string FindPostgresBinDir(const std::string& preferred) {
  if (!preferred.empty()) return HasServerBinaries(preferred) ? preferred : "";
  if (const char* env = std::getenv("NEXUS_PG_BINDIR"); env && *env) {
    return HasServerBinaries(env) ? std::string(env) : "";
  }
  std::vector<std::pair<int, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const fs::path bin = entry.path() / "bin";
    if (!HasServerBinaries(bin)) continue;
    found.emplace_back(std::atoi(entry.path().filename().c_str()), bin);
  }
  if (!found.empty()) return std::max_element(found.begin(), found.end())->second.string();
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    size_t start = 0;
    while (start <= p.size()) {
      size_t end = p.find(':', start);
      if (end == std::string::npos) end = p.size();
      fs::path dir = p.substr(start, end - start);
      if (!dir.empty() && HasServerBinaries(dir)) return dir.string();
      start = end + 1;
    }
  }
  return "";
}

EmbeddedPostgres::EmbeddedPostgres(EmbeddedPostgresOptions options) : options_(std::move(options)) {}

EmbeddedPostgres::~EmbeddedPostgres() {
  try {
    Stop();
  } catch (const std::exception& e) {
    log::Error("stopping embedded PostgreSQL failed", {{"cause", e.what()}});
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the data dir
}

void EmbeddedPostgres::Prepare() {
  bin_dir_ = FindPostgresBinDir(options_.bin_dir);
  if (bin_dir_.empty()) {
    throw std::runtime_error(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found" +
        (options_.bin_dir.empty() ? std::string(" in /usr/lib/postgresql/*/bin or PATH") : " in " + options_.bin_dir) +
        ". Install them (Debian: apt-get install postgresql-15), set NEXUS_PG_BINDIR, or pass --database-url "
        "to use an existing server.");
  }
  std::error_code ec;
  // Relative paths are relative to the working directory: name both, so a wrong one is obvious.
  const std::string shown = fs::path(options_.data_dir).is_absolute()
                                ? options_.data_dir
                                : options_.data_dir + " (" + fs::absolute(options_.data_dir, ec).string() + ")";
  fs::create_directories(options_.data_dir, ec);
  if (ec) {
    throw std::runtime_error("the data dir " + shown + " is not usable: " + ec.message() +
                             ". Pass --data-dir with a writable directory, or --database-url.");
  }
  data_dir_ = fs::canonical(options_.data_dir).string();
  // Personal data lives here: owner only, whatever the umask.
  if (::chmod(data_dir_.c_str(), 0700) != 0) {
    throw std::runtime_error("cannot make the data dir " + data_dir_ +
                             " private (chmod 0700): " + std::strerror(errno));
  }
  if (::access(data_dir_.c_str(), W_OK | X_OK) != 0) {
    throw std::runtime_error("the data dir " + shown + " is not writable (" + std::strerror(errno) +
                             "). Pass --data-dir with a writable directory, or --database-url.");
  }
  // Before anything else touches the cluster: a second nexusd on this dir must not start, stop or reuse it.
  if (lock_fd_ < 0) lock_fd_ = LockDataDir(data_dir_);
  pgdata_ = data_dir_ + "/pgdata";
  log_file_ = data_dir_ + "/postgres.log";
  socket_dir_ = data_dir_ + "/run";
  // Unix socket paths are limited to ~107 bytes: fall back to a short private directory under /tmp.
  if (socket_dir_.size() + 20 > 100) {
    socket_dir_ = "/tmp/nexusd-" + StableId128(data_dir_).substr(0, 12);
  }
  fs::create_directories(socket_dir_, ec);
  if (ec) throw std::runtime_error("cannot create socket directory " + socket_dir_ + ": " + ec.message());
  ::chmod(socket_dir_.c_str(), 0700);
  run_as_ = ::geteuid() == 0 ? "postgres" : "";
}

int EmbeddedPostgres::RunPgCtl(const std::vector<std::string>& args, bool quiet) {
  std::vector<std::string> argv{bin_dir_ + "/pg_ctl", "-D", pgdata_};
  argv.insert(argv.end(), args.begin(), args.end());
  return Spawn(argv, run_as_, quiet ? "/dev/null" : log_file_);
}

std::string EmbeddedPostgres::Start() {
  if (started_) return url_;
  Prepare();
  {  // the server log may quote statements: owner only, whatever the umask
    const int fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) ::close(fd);
    ::chmod(log_file_.c_str(), 0600);
  }
  if (!run_as_.empty()) {
    const UserIds ids = LookupUser(run_as_);
    CheckTraversable(data_dir_, ids.uid, ids.gid);
    // The data dir (0700), log file and socket dir must be the postgres user's; so must pgdata once it exists.
    if (::chown(data_dir_.c_str(), ids.uid, ids.gid) != 0) {
      throw std::runtime_error("cannot hand " + data_dir_ + " to the postgres user: " + std::strerror(errno));
    }
    ChownTree(log_file_, ids.uid, ids.gid);
    ChownTree(socket_dir_, ids.uid, ids.gid);
    if (fs::exists(pgdata_))
      ChownTree(pgdata_, ids.uid, ids.gid);
    else
      ChownTree(data_dir_, ids.uid, ids.gid);
  }
  if (!fs::exists(fs::path(pgdata_) / "PG_VERSION")) {
    log::Info("creating embedded PostgreSQL cluster", {{"pgdata", pgdata_}, {"bin_dir", bin_dir_}});
    std::vector<std::string> initdb{bin_dir_ + "/initdb", "-D", pgdata_, "-U",         "nexus", "--auth-local=peer",
                                    "--auth-host=reject", "-E", "UTF8",  "--no-locale"};
    if (Spawn(initdb, run_as_, log_file_) != 0) {
      throw std::runtime_error("initdb failed for " + pgdata_ + "; see " + log_file_ + ":\n" +
                               ReadTail(log_file_, 2000));
    }
    std::ofstream conf(pgdata_ + "/postgresql.conf", std::ios::app);
    conf << "\n# nexusd embedded cluster: unix socket only, in a private directory\n"
         << "listen_addresses = ''\n"
         << "unix_socket_directories = '" << socket_dir_ << "'\n"
         << "port = " << options_.port << "\n";
  }
  WriteAccessRules();
  std::string opts = "-k " + socket_dir_ + " -p " + std::to_string(options_.port) + " -c listen_addresses=";
  for (const auto& o : options_.server_options) opts += " -c " + o;
  const bool already = RunPgCtl({"status"}, true) == 0;
  reused_ = already;
  if (already) {
    // We hold the data dir lock, so no live nexusd runs it: an earlier one died without stopping it.
    log::Warn("embedded PostgreSQL was left running by an nexusd that exited without stopping it; reusing it",
              {{"pgdata", pgdata_}});
    RunPgCtl({"reload"}, true);  // apply the access rules written above
  } else {
    log::Info("starting embedded PostgreSQL", {{"pgdata", pgdata_}, {"socket_dir", socket_dir_}});
    if (RunPgCtl({"-l", log_file_, "-w", "-t", "120", "-o", opts, "start"}, false) != 0) {
      throw std::runtime_error("PostgreSQL did not start; see " + log_file_ + ":\n" + ReadTail(log_file_, 3000));
    }
  }
  started_ = true;
  const std::string admin_url =
      "host=" + socket_dir_ + " port=" + std::to_string(options_.port) + " dbname=postgres user=nexus";
  url_ = "host=" + socket_dir_ + " port=" + std::to_string(options_.port) + " dbname=nexus user=nexus";
  try {
    pqxx::connection c(admin_url);
    pqxx::nontransaction n(c);
    if (n.exec("SELECT 1 FROM pg_database WHERE datname = 'nexus'").empty()) n.exec("CREATE DATABASE nexus");
  } catch (const std::exception& e) {
    Stop();
    throw std::runtime_error(std::string("embedded PostgreSQL started but the nexus database is not usable: ") +
                             e.what());
  }
  return url_;
}

void EmbeddedPostgres::Stop() {
  if (!started_) return;
  started_ = false;
  log::Info("stopping embedded PostgreSQL", {{"pgdata", pgdata_}});
  if (RunPgCtl({"-m", "fast", "-w", "-t", "60", "stop"}, false) != 0) {
    if (RunPgCtl({"status"}, true) == 0) {
      RunPgCtl({"-m", "immediate", "-w", "stop"}, false);
    }
  }
}

void EmbeddedPostgres::WriteAccessRules() {
  // Only the OS user PostgreSQL runs as and the one running nexusd may connect, as the database user nexus,
  // over the private socket (peer authentication: the kernel tells the server who is on the other end).
  // Clusters created by older versions had "trust" for every local user: rewritten here on every start.
  std::vector<std::string> os_users;
  if (struct passwd* me = ::getpwuid(::geteuid())) os_users.emplace_back(me->pw_name);
  if (!run_as_.empty()) os_users.push_back(run_as_);
  const std::string hba = pgdata_ + "/pg_hba.conf", ident = pgdata_ + "/pg_ident.conf";
  {
    std::ofstream out(hba, std::ios::trunc);
    out << "# Written by nexusd on every start: socket only, peer authentication, mapped users only.\n"
        << "local all all peer map=nexus\n";
    if (!out) throw std::runtime_error("cannot write " + hba);
  }
  {
    std::ofstream out(ident, std::ios::trunc);
    out << "# Written by nexusd on every start: OS user -> database user.\n";
    for (const auto& u : os_users) out << "nexus " << u << " nexus\n";
    if (!out) throw std::runtime_error("cannot write " + ident);
  }
  ::chmod(hba.c_str(), 0600);
  ::chmod(ident.c_str(), 0600);
  if (!run_as_.empty()) {
    const UserIds ids = LookupUser(run_as_);
    ChownTree(hba, ids.uid, ids.gid);
    ChownTree(ident, ids.uid, ids.gid);
  }
}

std::string EmbeddedPostgres::PsqlCommand() const { return "psql \"" + url_ + "\""; }

}  // namespace nexus::storage
