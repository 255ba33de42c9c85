#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>  // Boost 1.74 asio (awaitable.hpp) uses std::exchange without including it

namespace nexus::server {

/// A parsed HTTP request, free of any Beast type.
struct HttpRequest {
  std::string method;                          ///< "GET", "POST", ...
  std::string path;                            ///< decoded path without the query string
  std::map<std::string, std::string> query;    ///< decoded query parameters (last one wins)
  std::map<std::string, std::string> headers;  ///< authorization and content-type, names lower-cased
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

/// TLS for the HTTP listener: PEM files. Empty cert_file: plaintext. client_ca_file set: clients must present
/// a certificate signed by that CA (mTLS).
struct HttpTlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
};

/// HTTP/1.1 server (Boost.Beast; the only translation unit that includes it). Keep-alive, a fixed
/// number of worker threads; handlers may block.
class HttpServer final {
 public:
  /// Throws std::runtime_error when the TLS files cannot be loaded.
  HttpServer(std::string listen, int threads, HttpHandler handler, HttpTlsOptions tls = {});
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
