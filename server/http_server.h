#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

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

/// HTTP/1.1 server (Boost.Beast; the only translation unit that includes it). Keep-alive, a fixed
/// number of worker threads; handlers may block.
class HttpServer final {
 public:
  HttpServer(std::string listen, int threads, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and starts serving; returns the bound port (useful with port 0). Throws on bind errors.
  int Start();
  /// Stops accepting; waits up to `grace` for in-flight requests, then closes everything.
  void Stop(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nexus::server
