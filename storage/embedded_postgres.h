#pragma once

#include <string>
#include <vector>

namespace nexus::storage {

struct EmbeddedPostgresOptions {
  std::string data_dir = "./nexus-data";  ///< holds pgdata/, run/ (socket) and postgres.log
  std::string bin_dir;  ///< PostgreSQL binaries; empty: NEXUS_PG_BINDIR or the newest /usr/lib/postgresql/*/bin
  int port = 5432;      ///< names the unix socket only (TCP is off)
  std::vector<std::string> server_options;  ///< extra '-c name=value' settings (tests turn fsync off)
};

/// A private PostgreSQL cluster under a data directory, for running nexusd without a database server.
///
/// Start() creates the cluster on first use (initdb), starts it on a unix socket in its own directory
/// (no TCP port; peer authentication: only the OS user PostgreSQL runs as and the one running nexusd; data
/// dir 0700 and log 0600 whatever the umask), creates the `nexus` database and returns
/// its connection string; a second Start() on the same directory reuses the data. When the process runs
/// as root, PostgreSQL runs as the unprivileged `postgres` user. Stop() shuts it down (fast mode).
/// One process per data dir: Start() first takes an exclusive lock on <data dir>/nexusd.lock (held until
/// destruction, released by the kernel if the process dies) and fails, naming the holder's pid, without
/// touching the cluster when another process holds it. Modes outside the data dir are never changed.
/// Errors throw std::runtime_error with a message that says what to do.
class EmbeddedPostgres final {
 public:
  explicit EmbeddedPostgres(EmbeddedPostgresOptions options);
  ~EmbeddedPostgres();  ///< stops the cluster if this object started it
  EmbeddedPostgres(const EmbeddedPostgres&) = delete;
  EmbeddedPostgres& operator=(const EmbeddedPostgres&) = delete;

  std::string Start();
  void Stop();
  bool running() const { return started_; }
  /// True when Start() found the cluster already running (another nexusd uses it).
  bool reused() const { return reused_; }
  /// Forgets the cluster without stopping it (a short-lived tool that found it running must not stop it).
  void Detach() { started_ = false; }
  /// libpq connection string of the `nexus` database (valid after Start()).
  const std::string& url() const { return url_; }
  /// A psql command line that opens the database, for humans.
  std::string PsqlCommand() const;
  const std::string& socket_dir() const { return socket_dir_; }

 private:
  int RunPgCtl(const std::vector<std::string>& args, bool quiet);
  void Prepare();
  void WriteAccessRules();  ///< pg_hba.conf / pg_ident.conf: peer auth for our OS users only

  EmbeddedPostgresOptions options_;
  std::string bin_dir_;
  std::string data_dir_;
  std::string pgdata_;
  std::string socket_dir_;
  std::string log_file_;
  std::string url_;
  std::string run_as_;  ///< user postgres runs as when we are root ("" otherwise)
  bool started_ = false;
  bool reused_ = false;
  int lock_fd_ = -1;  ///< flock on <data dir>/nexusd.lock, held until destruction
};

/// Locates the PostgreSQL server binaries (initdb, pg_ctl, postgres); "" when none are found.
std::string FindPostgresBinDir(const std::string& preferred);

}  // namespace nexus::storage
