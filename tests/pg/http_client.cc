#include "http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <stdexcept>

namespace nexus::testing {

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

HttpResult HttpCall(int port, const std::string& method, const std::string& target, const std::string& body,
                    const std::string& extra_headers) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers;
  std::string lower_headers;
  for (char c : extra_headers) lower_headers += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!body.empty() || method == "POST") {
    if (lower_headers.find("content-type:") == std::string::npos) req += "Content-Type: application/json\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  return HttpRaw(port, req);
}

HttpResult HttpRaw(int port, const std::string& req) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  for (size_t sent = 0; sent < req.size();) {
    const ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything (413, 414, 431)
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  HttpResult r;
  const auto header_end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || header_end == std::string::npos) {
    throw std::runtime_error("malformed or no HTTP response (" + std::to_string(raw.size()) + " bytes)");
  }
  r.status = std::stoi(raw.substr(9, 3));
  const std::string headers = raw.substr(0, header_end);
  std::string lower;
  for (char c : headers) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (auto p = lower.find("content-type:"); p != std::string::npos) {
    auto e = headers.find("\r\n", p);
    r.content_type = headers.substr(p + 13, e - p - 13);
    while (!r.content_type.empty() && r.content_type.front() == ' ') r.content_type.erase(0, 1);
  }
  for (size_t line = headers.find("\r\n"); line != std::string::npos;) {
    const size_t start = line + 2, end = headers.find("\r\n", start);
    const std::string h = lower.substr(start, (end == std::string::npos ? headers.size() : end) - start);
    if (const auto colon = h.find(':'); colon != std::string::npos) {
      size_t v = colon + 1;
      while (v < h.size() && h[v] == ' ') ++v;
      r.header_values[h.substr(0, colon)] = headers.substr(start + v, h.size() - v);
    }
    line = end;
  }
  r.body = raw.substr(header_end + 4);
  r.headers = lower;
  return r;
}

}  // namespace nexus::testing
