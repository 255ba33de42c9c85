#include "storage/database.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <thread>

#include "common/log.h"
#include "storage/detail/migrations_embedded.h"
#include "storage/detail/pg.h"

namespace nexus::storage {
namespace detail {

std::string LogMonth(int64_t micros) {
  const std::time_t t = static_cast<std::time_t>(micros >= 0 ? micros / 1000000 : (micros - 999999) / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d%02d", tm.tm_year + 1900, tm.tm_mon + 1);
  return buf;
}

std::string FormatTimestamp(int64_t micros) {
  int64_t secs = micros / 1000000;
  int64_t frac = micros % 1000000;
  if (frac < 0) {
    frac += 1000000;
    secs -= 1;
  }
  const time_t t = static_cast<time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(frac));
  return buf;
}

namespace {
void AppendQuoted(std::string& out, std::string_view v) {
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}
}  // namespace

std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    AppendQuoted(out, values[i]);
  }
  out += '}';
  return out;
}

std::string TextArray(const std::vector<std::optional<std::string>>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    if (values[i])
      AppendQuoted(out, *values[i]);
    else
      out += "NULL";
  }
  out += '}';
  return out;
}

std::string Int64Array(const std::vector<int64_t>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(values[i]);
  }
  out += '}';
  return out;
}

std::string BoolArray(const std::vector<bool>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += values[i] ? 't' : 'f';
  }
  out += '}';
  return out;
}

bool IsRetryable(const std::exception& e) {
  return dynamic_cast<const pqxx::serialization_failure*>(&e) != nullptr ||
         dynamic_cast<const pqxx::deadlock_detected*>(&e) != nullptr ||
         dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr;
}

StorageError MapException(const std::exception& e, std::string_view context, std::string* metric_kind) {
  const std::string where(context);
  if (auto* se = dynamic_cast<const StorageError*>(&e)) {
    *metric_kind = "other";
    return *se;
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e)) {
    *metric_kind = "connection";
    return StorageError(ErrorKind::kUnavailable, where + ": database unavailable", e.what());
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e)) {
    *metric_kind = "connection";
    return StorageError(ErrorKind::kUnavailable, where + ": commit outcome unknown (connection lost)", e.what());
  }
  if (dynamic_cast<const pqxx::serialization_failure*>(&e)) {
    *metric_kind = "serialization";
    return StorageError(ErrorKind::kUnavailable, where + ": serialization failure, retry", e.what());
  }
  if (dynamic_cast<const pqxx::deadlock_detected*>(&e)) {
    *metric_kind = "deadlock";
    return StorageError(ErrorKind::kUnavailable, where + ": deadlock, retry", e.what());
  }
  if (dynamic_cast<const pqxx::integrity_constraint_violation*>(&e)) {
    *metric_kind = "constraint";
    return StorageError(ErrorKind::kInvalidArgument, where + ": rejected by a database constraint", e.what());
  }
  if (dynamic_cast<const pqxx::data_exception*>(&e)) {
    *metric_kind = "data";
    return StorageError(ErrorKind::kInvalidArgument, where + ": a value was rejected by the database", e.what());
  }
  *metric_kind = "other";
  return StorageError(ErrorKind::kInternal, where + ": internal database error", e.what());
}

}  // namespace detail

std::string WithConnectionSettings(const std::string& url, const DatabaseOptions& o) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  const long long connect_s = std::max<long long>(2, duration_cast<seconds>(o.connect_timeout).count());
  const long long user_ms = o.tcp_user_timeout.count();
  const long long idle_s = std::max<long long>(1, user_ms / 3000);
  const std::vector<std::pair<std::string, std::string>> wanted = {
      {"connect_timeout", std::to_string(connect_s)},
      {"keepalives", "1"},
      {"keepalives_idle", std::to_string(idle_s)},
      {"keepalives_interval", std::to_string(std::max<long long>(1, idle_s / 3))},
      {"keepalives_count", "3"},
      {"tcp_user_timeout", std::to_string(user_ms)}};
  const bool uri = url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
  std::string out = url;
  for (const auto& [k, v] : wanted) {
    if (url.find(k + "=") != std::string::npos) continue;  // the operator's own setting wins
    if (k == "tcp_user_timeout" && user_ms <= 0) continue;
    if (uri)
      out += (out.find('?') == std::string::npos ? "?" : "&") + k + "=" + v;
    else
      out += (out.empty() ? "" : " ") + k + "=" + v;
  }
  return out;
}

void Database::SetUnavailable(const std::string& reason) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->unavailable = reason;
}

std::unique_ptr<pqxx::connection> Database::Impl::Connect(bool pooled) {
  try {
    auto c = std::make_unique<pqxx::connection>(WithConnectionSettings(options.url, options));
    // Behind a transaction pooler a session SET would land on whichever server session runs it (and stay there
    // for other clients): Run applies them with SET LOCAL instead.
    if (options.transaction_pooler) return c;
    pqxx::nontransaction n(*c);
    n.exec("SET TIME ZONE 'UTC'");
    n.exec("SET idle_in_transaction_session_timeout = " + std::to_string(options.idle_in_transaction_timeout.count()));
    if (pooled) n.exec("SET statement_timeout = " + std::to_string(options.statement_timeout.count()));
    return c;
  } catch (const std::exception& e) {
    if (observer) observer->OnError("connection");
    throw StorageError(ErrorKind::kUnavailable, "cannot connect to PostgreSQL",
                       "at " + RedactUrl(options.url) + ": " + RedactUrl(e.what()));
  }
}

std::unique_ptr<detail::PooledConnection> Database::Impl::Acquire() {
  std::unique_lock<std::mutex> lock(mu);
  if (!unavailable.empty()) throw StorageError(ErrorKind::kUnavailable, "database unavailable: " + unavailable);
  const auto deadline = std::chrono::steady_clock::now() + options.acquire_timeout;
  while (idle.empty() && open >= options.pool_size) {
    if (cv.wait_until(lock, deadline) == std::cv_status::timeout && idle.empty() && open >= options.pool_size) {
      throw StorageError(ErrorKind::kUnavailable, "no free database connection within the acquire timeout");
    }
  }
  ++in_use;
  if (!idle.empty()) {
    auto c = std::move(idle.back());
    idle.pop_back();
    if (observer && options.report_pool) observer->OnPoolChange(open, in_use);
    return c;
  }
  ++open;
  if (observer && options.report_pool) observer->OnPoolChange(open, in_use);
  lock.unlock();
  try {
    auto pc = std::make_unique<detail::PooledConnection>();
    pc->conn = Connect();
    pc->named_statements = !options.transaction_pooler;
    return pc;
  } catch (...) {
    lock.lock();
    --open;
    --in_use;
    if (observer && options.report_pool) observer->OnPoolChange(open, in_use);
    cv.notify_one();
    throw;
  }
}

void Database::Impl::Release(std::unique_ptr<detail::PooledConnection> c, bool broken) {
  std::lock_guard<std::mutex> lock(mu);
  --in_use;
  if (broken || !c || !c->conn || !c->conn->is_open()) {
    --open;
  } else {
    idle.push_back(std::move(c));
  }
  if (observer && options.report_pool) observer->OnPoolChange(open, in_use);
  cv.notify_one();
}

void Database::Impl::Prepare(detail::PooledConnection& c, const std::string& name, const std::string& sql) {
  if (c.prepared.insert(name).second) c.conn->prepare(name, sql);
}

std::string Database::Impl::LocalSettingsSql() const {
  return "SET LOCAL TIME ZONE 'UTC'; SET LOCAL statement_timeout = " +
         std::to_string(options.statement_timeout.count()) + "; SET LOCAL idle_in_transaction_session_timeout = " +
         std::to_string(options.idle_in_transaction_timeout.count());
}

void Database::Impl::Run(std::string_view what, const std::function<void(pqxx::work&, detail::PooledConnection&)>& fn,
                         int attempts) {
  if (route) return route(what, fn, attempts);
  for (int attempt = 1;; ++attempt) {
    std::unique_ptr<detail::PooledConnection> c;
    bool broken = false;
    try {
      c = Acquire();
      pqxx::work tx(*c->conn);
      if (options.transaction_pooler) tx.exec(LocalSettingsSql());
      fn(tx, *c);
      tx.commit();
      Release(std::move(c), false);
      return;
    } catch (const std::exception& e) {
      broken = dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
               dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr;
      if (c) {
        // Read the state before the move: argument evaluation order is unspecified, and a moved-from `c`
        // is null (Clang evaluates left to right and crashed here).
        const bool drop = broken || !c->conn || !c->conn->is_open();
        Release(std::move(c), drop);
      }
      const bool is_storage = dynamic_cast<const StorageError*>(&e) != nullptr;
      if (!is_storage && attempt < attempts && detail::IsRetryable(e)) {
        log::Warn("retrying transaction",
                  {{"operation", std::string(what)}, {"attempt", attempt}, {"cause", e.what()}});
        std::this_thread::sleep_for(std::chrono::milliseconds(20 * attempt));
        continue;
      }
      std::string kind;
      StorageError mapped = detail::MapException(e, what, &kind);
      if (!is_storage && observer) observer->OnError(kind);
      throw mapped;
    }
  }
}

Database::Database(DatabaseOptions options, StorageObserver* observer) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->observer = observer;
  if (impl_->options.pool_size < 1) impl_->options.pool_size = 1;
}

Database::~Database() = default;

const DatabaseOptions& Database::options() const { return impl_->options; }
StorageObserver* Database::observer() const { return impl_->observer; }

void Database::Ping() {
  impl_->Run(
      "ping", [](pqxx::work& tx, detail::PooledConnection&) { tx.exec("SELECT 1"); }, 1);
}

bool Database::IsMigrated() {
  const int latest = detail::EmbeddedMigrations().empty() ? 0 : detail::EmbeddedMigrations().back().version;
  bool ok = false;
  impl_->Run(
      "readiness",
      [&](pqxx::work& tx, detail::PooledConnection&) {
        auto r = tx.exec("SELECT to_regclass('schema_migrations') IS NOT NULL");
        if (!r[0][0].as<bool>()) return;
        auto v = tx.exec("SELECT coalesce(max(version), 0) FROM schema_migrations");
        ok = v[0][0].as<int>() >= latest;
      },
      1);
  return ok;
}

std::string RedactUrl(std::string_view url) {
  std::string s(url);
  // URI userinfo: scheme://user:password@host (the authority ends at the first '/', '?' or '#').
  if (auto scheme = s.find("://"); scheme != std::string::npos) {
    const size_t from = scheme + 3;
    const size_t authority_end = std::min(s.find_first_of("/?#", from), s.size());
    const size_t at = s.rfind('@', authority_end == 0 ? 0 : authority_end - 1);
    if (at != std::string::npos && at >= from) {
      const size_t colon = s.find(':', from);
      if (colon != std::string::npos && colon < at) s.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // password=value, as a key/value setting (password=x, password = 'a b') or a URI query parameter
  // (?password=x&..., &sslpassword=x). Case-insensitive; quoted values may hold spaces and \' escapes.
  std::string lower(s.size(), '\0');
  std::transform(s.begin(), s.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (size_t p = lower.find("password"); p != std::string::npos; p = lower.find("password", p + 1)) {
    size_t i = p + 8;
    while (i < s.size() && s[i] == ' ') ++i;
    if (i >= s.size() || s[i] != '=') continue;
    ++i;
    while (i < s.size() && s[i] == ' ') ++i;
    size_t end = i;
    if (end < s.size() && s[end] == '\'') {
      ++end;
      while (end < s.size() && s[end] != '\'') end += s[end] == '\\' ? 2 : 1;
      end = std::min(end + 1, s.size());
    } else {
      while (end < s.size() && s[end] != ' ' && s[end] != '&' && s[end] != '#') ++end;
    }
    s.replace(i, end - i, "***");
    lower.replace(i, end - i, "***");
  }
  return s;
}

}  // namespace nexus::storage
