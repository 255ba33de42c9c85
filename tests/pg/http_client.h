#pragma once
// A minimal blocking HTTP/1.1 client for tests (loopback only, Connection: close).

#include <map>
#include <string>

namespace nexus::testing {

struct HttpResult {
  int status = 0;
  std::string content_type;
  std::string body;
  std::string headers;  ///< the status line and header block, lower-cased (for header checks)
  std::map<std::string, std::string> header_values;  ///< by lower-case name (values as sent)
};

/// Sends one request to 127.0.0.1:port; throws std::runtime_error on socket errors. `headers` are extra raw
/// header lines ("Authorization: Bearer x\r\n"); when they hold a Content-Type, no default one is added.
HttpResult HttpCall(int port, const std::string& method, const std::string& target, const std::string& body = "",
                    const std::string& headers = "");
inline HttpResult HttpGet(int port, const std::string& target) { return HttpCall(port, "GET", target); }
inline HttpResult HttpPost(int port, const std::string& target, const std::string& body) {
  return HttpCall(port, "POST", target, body);
}
/// Sends `request` (raw bytes, as written) and reads the answer until the server closes.
HttpResult HttpRaw(int port, const std::string& request);
/// Percent-encodes a query parameter value.
std::string UrlEncode(const std::string& s);

}  // namespace nexus::testing
