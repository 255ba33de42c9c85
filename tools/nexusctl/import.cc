#include "tools/nexusctl/import.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>

#include "common/hash.h"
#include "tools/nexusctl/csv.h"
#include "tools/nexusctl/render.h"

namespace nexus::ctl {
namespace {

std::atomic<int> g_interrupted{0};

void OnSignal(int sig) { g_interrupted.store(sig); }

using Clock = std::chrono::steady_clock;

/// Kept in memory for the summary (the count is exact; the list is bounded).
constexpr size_t kMaxListedRejects = 1000;
/// Stay well below the server's default 16 MiB request limit.
constexpr size_t kMaxBatchBytes = 4 << 20;

struct Reject {
  int64_t line;
  std::string reason;
};

struct Counts {
  int64_t rows = 0;  ///< rows read (acknowledged or rejected)
  int64_t accepted = 0;
  int64_t duplicates = 0;
  int64_t rejected = 0;
  int64_t blocked = 0;
};

struct Checkpoint {
  std::string file;
  std::string fingerprint;
  std::string prefix_hash;  ///< hash of the file's first bytes up to the offset (at most 1 MiB)
  std::string default_time;
  uint64_t offset = 0;
  int64_t line = 1;
  Counts counts;
};

/// The file's first bytes (up to the offset, at most 64 KiB): a resumed import checks that the file it continues
/// is the one the checkpoint was written for (same path and mapping alone would accept an overwritten export).
constexpr uint64_t kPrefixBytes = 64 << 10;

std::string PrefixHash(const std::string& path, uint64_t offset) {
  std::ifstream f(path, std::ios::binary);
  std::string buf(static_cast<size_t>(std::min<uint64_t>(offset, kPrefixBytes)), '\0');
  f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
  buf.resize(static_cast<size_t>(f.gcount()));
  return StableId128(buf);
}

std::string FormatCheckpoint(const Checkpoint& c) {
  std::ostringstream s;
  s << "# nexusctl import checkpoint: the server acknowledged everything before this byte offset.\n"
    << "version=1\nfile=" << c.file << "\nmapping=" << c.fingerprint << "\nprefix=" << c.prefix_hash
    << "\ndefault_time=" << c.default_time << "\noffset=" << c.offset << "\nline=" << c.line
    << "\nrows=" << c.counts.rows << "\naccepted=" << c.counts.accepted << "\nduplicates=" << c.counts.duplicates
    << "\nrejected=" << c.counts.rejected << "\nblocked=" << c.counts.blocked << "\n";
  return s.str();
}

bool ParseCheckpoint(const std::string& text, Checkpoint* c) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) return false;
    kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  if (kv["version"] != "1") return false;
  try {
    c->file = kv["file"];
    c->fingerprint = kv["mapping"];
    c->prefix_hash = kv["prefix"];
    c->default_time = kv["default_time"];
    c->offset = std::stoull(kv.at("offset"));
    c->line = std::stoll(kv.at("line"));
    c->counts.rows = std::stoll(kv.at("rows"));
    c->counts.accepted = std::stoll(kv.at("accepted"));
    c->counts.duplicates = std::stoll(kv.at("duplicates"));
    c->counts.rejected = std::stoll(kv.at("rejected"));
    c->counts.blocked = std::stoll(kv.at("blocked"));
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

bool WriteFileAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return false;
    f << text;
    f.flush();
    if (!f) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

std::string Thousands(int64_t n) {
  const std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out = n < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string Duration(double secs) {
  if (!std::isfinite(secs) || secs < 0) return "?";
  const auto s = static_cast<int64_t>(secs + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

struct PendingEvent {
  v1::Event event;
  int64_t line;
};

/// Removes a leading "invalid ingest request: " and the "events[i]." path of a one-event request.
std::string CleanReason(std::string msg) {
  const std::string prefix = "invalid ingest request: ";
  if (msg.rfind(prefix, 0) == 0) msg = msg.substr(prefix.size());
  static const std::regex kPath(R"(events\[\d+\]\.?)");
  return std::regex_replace(msg, kPath, "");
}

class Importer {
 public:
  Importer(const ImportOptions& o, v1::IngestService::StubInterface& stub, const ContextFactory& ctx)
      : o_(o), stub_(stub), new_context_(ctx), batch_limit_(std::clamp(o.batch_size, 1, 1000)) {}

  int Run();

 private:
  int Fail(int code, const std::string& msg) {
    ClearProgress();
    std::cerr << "nexusctl import: " << msg << "\n";
    return code;
  }
  /// Sends the pending batch (recursively splitting it around rejected rows); false on a fatal RPC error.
  bool Flush(uint64_t end_offset, int64_t next_line);
  bool Send(std::vector<PendingEvent> events);
  bool SendOnStream(const v1::IngestEventsRequest& req, v1::IngestEventsResponse* resp, grpc::Status* status);
  bool SendOneByOne(const std::vector<PendingEvent>& events);
  void CloseStream();
  void AddReject(int64_t line, std::string reason);
  void Acknowledge(const v1::IngestEventsResponse& resp);
  void SaveCheckpoint();
  void Progress(bool force);
  void ClearProgress();
  int Summary(int code, const std::string& note);
  /// A failed RPC ends the import: the reason on stderr (code and server message), then the summary.
  int Fatal() {
    ClearProgress();
    std::cerr << "nexusctl import: ingest failed: " << StatusCodeName(fatal_.error_code()) << ": "
              << fatal_.error_message() << "\n";
    return Summary(ExitCodeFor(fatal_), "stopped by a server error (" + StatusCodeName(fatal_.error_code()) +
                                            "); run the same command again to resume from line " +
                                            std::to_string(cp_.line));
  }

  const ImportOptions& o_;
  v1::IngestService::StubInterface& stub_;
  const ContextFactory& new_context_;
  int batch_limit_;

  std::unique_ptr<grpc::ClientContext> stream_ctx_;
  std::unique_ptr<grpc::ClientReaderWriterInterface<v1::IngestEventsRequest, v1::IngestEventsResponse>> stream_;
  grpc::Status fatal_;

  std::vector<PendingEvent> batch_;
  size_t batch_bytes_ = 0;
  Counts batch_counts_;  ///< rows and client-side rejects of the batch not yet acknowledged
  std::vector<Reject> batch_rejects_;
  Counts counts_;  ///< acknowledged
  std::vector<Reject> rejects_;
  int64_t batches_acked_ = 0;

  Checkpoint cp_;
  std::string checkpoint_path_;
  bool use_checkpoint_ = false;
  uint64_t prefix_hashed_at_ = 0;

  bool tty_ = false;
  uint64_t file_size_ = 0, start_offset_ = 0, offset_ = 0;
  int64_t rows_at_start_ = 0, rejected_at_start_ = 0;
  Clock::time_point started_, last_progress_;
  bool progress_shown_ = false;
};

int Importer::Run() {
  const Mapping& m = o_.mapping;
  std::string format = m.format;
  Mapping mapping = m;
  const bool from_stdin = o_.path == "-";
  if (format.empty()) {
    const std::string ext = std::filesystem::path(o_.path).extension().string();
    if (ext == ".csv") {
      format = "csv";
    } else if (ext == ".tsv") {
      format = "csv";
      mapping.delimiter = '\t';
    } else if (ext == ".jsonl" || ext == ".ndjson" || ext == ".json") {
      format = "jsonl";
    } else {
      return Fail(kExitUsage,
                  "cannot tell the format of '" + o_.path + "' from its name: pass --format csv or --format jsonl");
    }
  }
  mapping.format = format;
  if (auto e = ValidateMapping(mapping); !e.empty()) return Fail(kExitUsage, e);

  std::ifstream file;
  std::istream* in = &std::cin;
  if (!from_stdin) {
    file.open(o_.path, std::ios::binary);
    if (!file) return Fail(kExitUsage, "cannot open '" + o_.path + "': " + std::strerror(errno));
    std::error_code ec;
    file_size_ = std::filesystem::file_size(o_.path, ec);
    in = &file;
  }

  // The header (CSV): every mapped column must be in it.
  std::vector<std::string> header;
  uint64_t data_offset = 0;
  int64_t data_line = 1;
  if (format == "csv" && mapping.header) {
    CsvReader hr(*in, mapping.delimiter);
    RawRecord rec;
    if (!hr.Next(&rec)) return Fail(kExitUsage, "'" + o_.path + "' is empty (expected a header line)");
    if (!rec.error.empty()) return Fail(kExitUsage, "header (line 1): " + rec.error);
    header = rec.fields;
    for (auto& h : header) {
      while (!h.empty() && (h.back() == ' ' || h.back() == '\r')) h.pop_back();
      while (!h.empty() && h.front() == ' ') h.erase(h.begin());
    }
    data_offset = rec.end_offset;
    data_line = hr.line();
    std::vector<std::string> wanted;
    for (const auto* refs : {&mapping.person_ids, &mapping.group_ids, &mapping.person_traits, &mapping.group_traits}) {
      for (const auto& r : *refs) wanted.push_back(r.column);
    }
    for (const auto* c : {&mapping.source_column, &mapping.time_column, &mapping.event_name_column,
                          &mapping.event_type_column, &mapping.event_id_column, &mapping.description_column,
                          &mapping.value_column, &mapping.membership_role_column}) {
      if (!c->empty()) wanted.push_back(*c);
    }
    for (const auto& w : wanted) {
      if (std::find(header.begin(), header.end(), w) != header.end()) continue;
      std::string cols;
      for (const auto& h : header) cols += (cols.empty() ? "" : ", ") + h;
      return Fail(kExitUsage, "column '" + w + "' is not in the header of '" + o_.path + "' (columns: " + cols + ")");
    }
  }

  // Checkpoint: resume from it when it belongs to this file and mapping.
  const std::string fingerprint = MappingFingerprint(mapping);
  use_checkpoint_ = !from_stdin;
  checkpoint_path_ = o_.checkpoint_path.empty() ? o_.path + ".nexusctl-checkpoint" : o_.checkpoint_path;
  std::string abs = from_stdin ? "-" : std::filesystem::absolute(o_.path).lexically_normal().string();
  cp_ = Checkpoint{};
  cp_.file = abs;
  cp_.fingerprint = fingerprint;
  cp_.offset = data_offset;
  cp_.line = data_line;
  bool resumed = false;
  if (use_checkpoint_ && !o_.restart && std::filesystem::exists(checkpoint_path_)) {
    std::ifstream f(checkpoint_path_);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    Checkpoint old;
    if (!ParseCheckpoint(text, &old)) {
      return Fail(kExitUsage,
                  "checkpoint '" + checkpoint_path_ + "' is unreadable: pass --restart to import from the start");
    }
    if (old.file != abs || old.fingerprint != fingerprint || old.offset > file_size_ ||
        PrefixHash(o_.path, old.offset) != old.prefix_hash) {
      return Fail(kExitUsage, "checkpoint '" + checkpoint_path_ +
                                  "' was written for another file, another mapping or " +
                                  "content that has changed since: pass --restart to import from the start (rows " +
                                  "already imported are duplicates and write nothing)");
    }
    cp_ = old;
    resumed = true;
  }
  if (cp_.default_time.empty()) {
    cp_.default_time =
        mapping.default_time.empty()
            ? google::protobuf::util::TimeUtil::ToString(google::protobuf::util::TimeUtil::GetCurrentTime())
            : mapping.default_time;
  }
  google::protobuf::Timestamp default_time;
  if (auto e = ParseTime(cp_.default_time, &default_time); !e.empty()) return Fail(kExitUsage, "default time: " + e);
  counts_ = cp_.counts;

  if (!from_stdin) {
    file.clear();
    file.seekg(static_cast<std::streamoff>(cp_.offset));
  } else if (format == "csv" && mapping.header) {
    // stdin: the header reader consumed exactly the header record.
  }
  start_offset_ = offset_ = cp_.offset;
  rows_at_start_ = counts_.rows;
  rejected_at_start_ = counts_.rejected;
  tty_ = ::isatty(2) == 1;
  started_ = last_progress_ = Clock::now();
  if (resumed && !o_.quiet) {
    std::cerr << "nexusctl import: resuming '" << o_.path << "' at line " << cp_.line << " (" << Thousands(counts_.rows)
              << " rows done before)\n";
  }

  std::unique_ptr<CsvReader> csv;
  std::unique_ptr<LineReader> lines;
  if (format == "csv") {
    csv = std::make_unique<CsvReader>(*in, mapping.delimiter, cp_.offset, cp_.line);
  } else {
    lines = std::make_unique<LineReader>(*in, cp_.offset, cp_.line);
  }
  if (!mapping.header && format == "csv") {
    // Columns are named 1, 2, ... (grown as wider rows appear).
  }

  RawRecord rec;
  int64_t next_line = cp_.line;
  v1::Event event;
  google::protobuf::Struct object;
  auto interrupted = [&] {
    return g_interrupted.load() != 0 || (o_.stop_after_batches > 0 && batches_acked_ >= o_.stop_after_batches);
  };
  while (!interrupted()) {
    const bool got = csv ? csv->Next(&rec) : lines->Next(&rec);
    if (!got) break;
    offset_ = rec.end_offset;
    next_line = csv ? csv->line() : lines->line();
    ++batch_counts_.rows;
    std::string err = rec.error;
    if (err.empty()) {
      if (csv) {
        if (!mapping.header) {
          while (header.size() < rec.fields.size()) header.push_back(std::to_string(header.size() + 1));
        } else if (rec.fields.size() != header.size()) {
          err = std::to_string(rec.fields.size()) + " fields, the header has " + std::to_string(header.size());
        }
        if (err.empty()) {
          CsvRow row(header, rec.fields);
          err = RowToEvent(mapping, row, CsvContent(header, rec.fields), default_time, &event);
        }
      } else {
        object.Clear();
        err = ParseJsonObject(rec.fields[0], &object);
        if (err.empty()) {
          JsonRow row(object);
          err = RowToEvent(mapping, row, rec.fields[0], default_time, &event);
        }
      }
    }
    if (!err.empty()) {
      AddReject(rec.line, err);
    } else {
      batch_bytes_ += event.ByteSizeLong();
      batch_.push_back({event, rec.line});
    }
    if (o_.max_errors >= 0 && counts_.rejected + batch_counts_.rejected - rejected_at_start_ > o_.max_errors) {
      // Acknowledge what came before the row that broke the limit, then stop.
      if (!Flush(offset_, next_line)) return Fatal();
      CloseStream();
      return Summary(kExitTooManyErrors, "stopped: more than " + std::to_string(o_.max_errors) +
                                             " rejected rows (--max-errors); fix them and run again to continue");
    }
    if (static_cast<int>(batch_.size()) >= batch_limit_ || batch_bytes_ >= kMaxBatchBytes) {
      if (!Flush(offset_, next_line)) return Fatal();
    }
    Progress(false);
  }
  if (interrupted()) {
    // The rows read since the last acknowledgement were not sent: the checkpoint is before them.
    CloseStream();
    std::string what = g_interrupted.load()
                           ? "interrupted"
                           : "stopped after " + std::to_string(batches_acked_) + " batches (--stop-after)";
    return Summary(kExitInterrupted,
                   what + "; run the same command again to resume from line " + std::to_string(cp_.line));
  }
  if (!Flush(offset_, next_line)) return Fatal();
  CloseStream();
  if (!fatal_.ok()) return Fatal();
  if (use_checkpoint_) std::filesystem::remove(checkpoint_path_);
  return Summary(counts_.rejected > 0 ? kExitRejected : kExitOk, "done");
}

void Importer::AddReject(int64_t line, std::string reason) {
  ++batch_counts_.rejected;
  batch_rejects_.push_back({line, std::move(reason)});
}

bool Importer::Flush(uint64_t end_offset, int64_t next_line) {
  if (!batch_.empty()) {
    std::vector<PendingEvent> events;
    events.swap(batch_);
    if (!Send(std::move(events))) return false;
  }
  counts_.rows += batch_counts_.rows;
  counts_.rejected += batch_counts_.rejected;
  for (auto& r : batch_rejects_) {
    if (rejects_.size() < kMaxListedRejects) rejects_.push_back(std::move(r));
  }
  std::sort(rejects_.begin(), rejects_.end(), [](const Reject& a, const Reject& b) { return a.line < b.line; });
  batch_rejects_.clear();
  batch_counts_ = Counts{};
  batch_bytes_ = 0;
  cp_.offset = end_offset;
  cp_.line = next_line;
  ++batches_acked_;
  SaveCheckpoint();
  Progress(false);
  return true;
}

void Importer::Acknowledge(const v1::IngestEventsResponse& resp) {
  counts_.accepted += resp.accepted();
  counts_.duplicates += resp.duplicates();
  counts_.blocked += resp.blocked_identifiers();
}

bool Importer::SendOnStream(const v1::IngestEventsRequest& req, v1::IngestEventsResponse* resp, grpc::Status* status) {
  if (!stream_) {
    stream_ctx_ = new_context_(false);
    stream_ = stub_.IngestEventStream(stream_ctx_.get());
  }
  if (stream_->Write(req) && stream_->Read(resp)) return true;
  *status = stream_->Finish();
  if (status->ok()) *status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server closed the stream");
  stream_.reset();
  stream_ctx_.reset();
  return false;
}

void Importer::CloseStream() {
  if (!stream_) return;
  stream_->WritesDone();
  grpc::Status s = stream_->Finish();
  if (!s.ok() && fatal_.ok()) fatal_ = s;
  stream_.reset();
  stream_ctx_.reset();
}

bool Importer::Send(std::vector<PendingEvent> events) {
  if (events.empty()) return true;
  if (static_cast<int>(events.size()) > batch_limit_) {
    for (size_t i = 0; i < events.size(); i += static_cast<size_t>(batch_limit_)) {
      std::vector<PendingEvent> part(
          events.begin() + static_cast<std::ptrdiff_t>(i),
          events.begin() + static_cast<std::ptrdiff_t>(std::min(events.size(), i + batch_limit_)));
      if (!Send(std::move(part))) return false;
    }
    return true;
  }
  v1::IngestEventsRequest req;
  for (const auto& e : events) *req.add_events() = e.event;
  v1::IngestEventsResponse resp;
  grpc::Status st;
  if (SendOnStream(req, &resp, &st)) {
    Acknowledge(resp);
    return true;
  }
  const std::string& msg = st.error_message();
  if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && events.size() > 1) {
    const size_t half = events.size() / 2;
    std::vector<PendingEvent> a(events.begin(), events.begin() + static_cast<std::ptrdiff_t>(half));
    std::vector<PendingEvent> b(events.begin() + static_cast<std::ptrdiff_t>(half), events.end());
    return Send(std::move(a)) && Send(std::move(b));
  }
  if (st.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
    fatal_ = st;
    return false;
  }
  static const std::regex kLimit(R"(at most (\d+) per request)");
  std::smatch lm;
  if (std::regex_search(msg, lm, kLimit) && msg.rfind("invalid ingest request", 0) != 0) {
    const int limit = std::stoi(lm[1]);
    if (limit > 0 && limit < static_cast<int>(events.size())) {
      batch_limit_ = limit;
      return Send(std::move(events));
    }
  }
  // "invalid ingest request: events[3].occurred_at: missing; events[7]...": reject those rows, resend the rest.
  static const std::regex kIndex(R"(events\[(\d+)\])");
  std::map<size_t, std::string> bad;
  std::string body = msg;
  const std::string prefix = "invalid ingest request: ";
  if (body.rfind(prefix, 0) == 0) body = body.substr(prefix.size());
  std::vector<std::pair<size_t, size_t>> starts;  // (position, index)
  for (auto it = std::sregex_iterator(body.begin(), body.end(), kIndex); it != std::sregex_iterator(); ++it) {
    if (it->position(0) == 0 || body.compare(static_cast<size_t>(it->position(0)) - 2, 2, "; ") == 0) {
      starts.emplace_back(static_cast<size_t>(it->position(0)), std::stoul((*it)[1]));
    }
  }
  for (size_t i = 0; i < starts.size(); ++i) {
    const size_t end = i + 1 < starts.size() ? starts[i + 1].first - 2 : body.size();
    const size_t idx = starts[i].second;
    if (idx >= events.size()) {
      bad.clear();
      break;
    }
    std::string part = CleanReason(body.substr(starts[i].first, end - starts[i].first));
    bad[idx] += (bad[idx].empty() ? "" : "; ") + part;
  }
  if (bad.empty()) return SendOneByOne(events);
  std::vector<PendingEvent> rest;
  for (size_t i = 0; i < events.size(); ++i) {
    auto it = bad.find(i);
    if (it != bad.end()) {
      AddReject(events[i].line, "rejected by the server: " + it->second);
    } else {
      rest.push_back(std::move(events[i]));
    }
  }
  return Send(std::move(rest));
}

bool Importer::SendOneByOne(const std::vector<PendingEvent>& events) {
  for (const auto& e : events) {
    v1::IngestEventsRequest req;
    *req.add_events() = e.event;
    v1::IngestEventsResponse resp;
    auto ctx = new_context_(true);
    grpc::Status st = stub_.IngestEvents(ctx.get(), req, &resp);
    if (st.ok()) {
      Acknowledge(resp);
    } else if (st.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      AddReject(e.line, "rejected by the server: " + CleanReason(st.error_message()));
    } else {
      fatal_ = st;
      return false;
    }
  }
  return true;
}

void Importer::SaveCheckpoint() {
  if (!use_checkpoint_) return;
  cp_.counts = counts_;
  // Past the first 64 KiB the prefix no longer changes: hash it once.
  if (cp_.prefix_hash.empty() || prefix_hashed_at_ < kPrefixBytes) {
    cp_.prefix_hash = PrefixHash(o_.path, cp_.offset);
    prefix_hashed_at_ = cp_.offset;
  }
  if (!WriteFileAtomic(checkpoint_path_, FormatCheckpoint(cp_))) {
    ClearProgress();
    std::cerr << "nexusctl import: warning: cannot write the checkpoint '" << checkpoint_path_
              << "' (an interrupted import will start over; re-sent rows are duplicates)\n";
    use_checkpoint_ = false;
  }
}

void Importer::Progress(bool force) {
  if (o_.quiet) return;
  const auto now = Clock::now();
  const double since_last = std::chrono::duration<double>(now - last_progress_).count();
  if (!force) {
    if (tty_ && since_last < 0.2) return;
    if (!tty_ && (o_.progress_interval_s <= 0 || since_last < o_.progress_interval_s)) return;
  }
  last_progress_ = now;
  const double elapsed = std::max(1e-3, std::chrono::duration<double>(now - started_).count());
  const int64_t rows = counts_.rows + batch_counts_.rows;
  const double rate = static_cast<double>(rows - rows_at_start_) / elapsed;
  std::string line = Thousands(rows) + " rows";
  if (file_size_ > 0) {
    char pct[16];
    std::snprintf(pct, sizeof pct, "%5.1f%%", 100.0 * static_cast<double>(offset_) / static_cast<double>(file_size_));
    line += "  " + std::string(pct);
  }
  line += "  " + Thousands(static_cast<int64_t>(rate)) + " rows/s";
  if (file_size_ > 0 && offset_ > start_offset_) {
    const double byte_rate = static_cast<double>(offset_ - start_offset_) / elapsed;
    line += "  ETA " + Duration(static_cast<double>(file_size_ - std::min(file_size_, offset_)) / byte_rate);
  }
  line += "  accepted " + Thousands(counts_.accepted) + "  duplicates " + Thousands(counts_.duplicates) +
          "  rejected " + Thousands(counts_.rejected + batch_counts_.rejected);
  if (tty_) {
    std::cerr << "\r\033[K" << line << std::flush;
    progress_shown_ = true;
  } else {
    std::cerr << "nexusctl import: " << line << "\n";
  }
}

void Importer::ClearProgress() {
  if (tty_ && progress_shown_) std::cerr << "\r\033[K" << std::flush;
  progress_shown_ = false;
}

int Importer::Summary(int code, const std::string& note) {
  ClearProgress();
  const double elapsed = std::chrono::duration<double>(Clock::now() - started_).count();
  if (o_.json) {
    auto str = [](const std::string& v) {
      google::protobuf::Value value;
      value.set_string_value(v);
      std::string out;
      if (!google::protobuf::util::MessageToJsonString(value, &out).ok() || out.empty()) {
        return std::string("\"(not valid UTF-8)\"");
      }
      return out;
    };
    // Fields in a fixed order (a Struct would print them in hash order).
    std::string out = "{\"status\":";
    out += str(note);
    const std::pair<const char*, int64_t> numbers[] = {{"exit_code", code},
                                                       {"rows", counts_.rows},
                                                       {"accepted", counts_.accepted},
                                                       {"duplicates", counts_.duplicates},
                                                       {"rejected", counts_.rejected},
                                                       {"blocked_identifiers", counts_.blocked},
                                                       {"resume_line", cp_.line}};
    for (const auto& [name, value] : numbers) {
      out += ",\"";
      out += name;
      out += "\":";
      out += std::to_string(value);
    }
    out += ",\"rejected_rows\":[";
    for (size_t i = 0; i < rejects_.size(); ++i) {
      if (i) out += ",";
      out += "{\"line\":";
      out += std::to_string(rejects_[i].line);
      out += ",\"reason\":";
      out += str(rejects_[i].reason);
      out += "}";
    }
    out += "]}";
    std::cout << out << "\n";
  } else {
    std::cout << "import " << note << "\n"
              << "  rows:       " << Thousands(counts_.rows) << " (" << Duration(elapsed) << " in this run)\n"
              << "  accepted:   " << Thousands(counts_.accepted) << "\n"
              << "  duplicates: " << Thousands(counts_.duplicates) << " (already stored; nothing written)\n"
              << "  rejected:   " << Thousands(counts_.rejected) << "\n";
    if (counts_.blocked > 0) {
      std::cout << "  blocked identifiers: " << Thousands(counts_.blocked) << " (stored, never linked)\n";
    }
    constexpr size_t kShown = 50;
    for (size_t i = 0; i < rejects_.size() && i < kShown; ++i) {
      std::cout << "    line " << rejects_[i].line << ": " << rejects_[i].reason << "\n";
    }
    if (counts_.rejected > static_cast<int64_t>(std::min(rejects_.size(), kShown))) {
      std::cout << "    ... and "
                << Thousands(counts_.rejected - static_cast<int64_t>(std::min(rejects_.size(), kShown)))
                << " more (--json lists up to " << kMaxListedRejects << ")\n";
    }
  }
  std::cout.flush();
  return code;
}

}  // namespace

std::string StatusCodeName(grpc::StatusCode code) {
  static const char* kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : std::to_string(i);
}

int ExitCodeFor(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnavailable;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitDenied;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kExitUsage;
    default:
      return kExitError;
  }
}

void InstallInterruptHandler() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second signal ends the process at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);  // the terminal went away: stop as cleanly as on Ctrl-C
}

int RunImport(const ImportOptions& options, v1::IngestService::StubInterface& stub, const ContextFactory& new_context) {
  Importer importer(options, stub, new_context);
  return importer.Run();
}

}  // namespace nexus::ctl
