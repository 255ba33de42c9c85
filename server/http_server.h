#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>  // Boost 1.74 asio (awaitable.hpp) uses std::exchange without including it
#include <vector>

namespace nexus::server {

/// A parsed HTTP request, free of any Beast type.
struct HttpRequest {
  std::string method;                        ///< "GET", "POST", ...
  std::string path;                          ///< decoded path without the query string
  std::map<std::string, std::string> query;  ///< decoded query parameters (last one wins)
  /// authorization, content-type, content-encoding, origin, access-control-request-method/-headers; lower-case names
  std::map<std::string, std::string> headers;
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  /// Extra response headers (name, value), e.g. Content-Security-Policy or CORS.
  std::vector<std::pair<std::string, std::string>> headers{};
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;
/// The most body bytes a request may carry, by method and raw target (path + query). Bodies above it are
/// refused with 413 before they are read, so a huge body never reaches memory.
using HttpBodyLimit = std::function<uint64_t(std::string_view method, std::string_view target)>;

/// TLS for the HTTP listener: PEM files. Empty cert_file: plaintext. client_ca_file set: clients must present
/// a certificate signed by that CA (mTLS).
struct HttpTlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
};

/// HTTP/1.1 server (Boost.Beast; the only translation unit that includes it). Keep-alive, a fixed
/// number of worker threads; handlers may block. Every malformed request gets an answer before the connection
/// closes: 413 (body over the route's limit), 414 (request line over 8 KiB), 431 (headers over 8 KiB), 400.
class HttpServer final {
 public:
  static constexpr uint64_t kDefaultBodyLimit = 64 * 1024;
  static constexpr size_t kMaxHeaderBytes = 8 * 1024;
  /// Throws std::runtime_error when the TLS files cannot be loaded.
  HttpServer(std::string listen, int threads, HttpHandler handler, HttpTlsOptions tls = {},
             HttpBodyLimit body_limit = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and starts serving; returns the bound port (useful with port 0). Throws on bind errors.
  int Start();
  /// Re-reads the TLS files; connections accepted afterwards use them. Throws (keeping the old ones) when they
  /// cannot be loaded. No-op without TLS.
  void ReloadTls();
  /// Stops accepting; waits up to `grace` for in-flight requests, then closes everything.
  void Stop(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nexus::server
