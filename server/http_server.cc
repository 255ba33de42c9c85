// The one translation unit that includes Boost.Beast (compile time on 2 cores).
#include "server/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "common/log.h"

namespace nexus::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

HttpRequest ToRequest(const http::request<http::string_body>& req) {
  HttpRequest out;
  out.method = std::string(req.method_string());
  const std::string_view target(req.target().data(), req.target().size());
  const auto q = target.find('?');
  out.path = UrlDecode(target.substr(0, q), false);
  if (q != std::string_view::npos) {
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
      const auto amp = rest.find('&');
      const std::string_view pair = rest.substr(0, amp);
      const auto eq = pair.find('=');
      if (!pair.empty()) {
        out.query[UrlDecode(pair.substr(0, eq), true)] =
            eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1), true);
      }
      if (amp == std::string_view::npos) break;
      rest = rest.substr(amp + 1);
    }
  }
  for (const auto field :
       {http::field::authorization, http::field::content_type, http::field::content_encoding, http::field::origin,
        http::field::access_control_request_method, http::field::access_control_request_headers}) {
    if (auto it = req.find(field); it != req.end()) {
      std::string name(it->name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(it->value());
    }
  }
  if (auto it = req.find("x-nexus-min-lsn"); it != req.end()) out.headers["x-nexus-min-lsn"] = std::string(it->value());
  out.body = req.body();
  return out;
}

}  // namespace

struct HttpServer::Impl {
  std::string listen;
  int threads;
  HttpHandler handler;
  HttpBodyLimit body_limit;
  asio::io_context ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::vector<std::thread> workers;
  std::atomic<int> active{0};
  std::atomic<bool> stopping{false};
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  HttpTlsOptions tls;
  std::mutex tls_mu;                          // guards tls_context
  std::shared_ptr<ssl::context> tls_context;  ///< null: plaintext; replaced by ReloadTls

  /// Builds a TLS context from the files; throws std::runtime_error naming the file that failed.
  std::shared_ptr<ssl::context> LoadTls() const {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    auto step = [](const char* what, const std::string& file, auto&& fn) {
      beast::error_code ec;
      fn(ec);
      if (ec) throw std::runtime_error(std::string("TLS: cannot load the ") + what + " " + file + ": " + ec.message());
    };
    step("certificate", tls.cert_file,
         [&](beast::error_code& ec) { ctx->use_certificate_chain_file(tls.cert_file, ec); });
    step("private key", tls.key_file,
         [&](beast::error_code& ec) { ctx->use_private_key_file(tls.key_file, ssl::context::pem, ec); });
    if (!tls.client_ca_file.empty()) {
      step("client CA", tls.client_ca_file,
           [&](beast::error_code& ec) { ctx->load_verify_file(tls.client_ca_file, ec); });
      ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    return ctx;
  }

  void Accept() {
    acceptor->async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (!stopping) Accept();
        return;
      }
      std::shared_ptr<ssl::context> ctx;
      {
        std::lock_guard<std::mutex> lock(tls_mu);
        ctx = tls_context;
      }
      if (ctx) {
        std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(this, std::move(socket), ctx)->Start();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(this, std::move(socket), nullptr)->Start();
      }
      if (!stopping) Accept();
    });
  }

  /// One connection; Stream is beast::tcp_stream or beast::ssl_stream<beast::tcp_stream>.
  template <class Stream>
  struct Session : std::enable_shared_from_this<Session<Stream>> {
    static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;
    Session(Impl* owner, tcp::socket s, std::shared_ptr<ssl::context> c)
        : impl(owner), ctx(std::move(c)), stream(MakeStream(std::move(s), ctx.get())) {}
    static Stream MakeStream(tcp::socket s, ssl::context* c) {
      if constexpr (kTls) {
        return Stream(std::move(s), *c);
      } else {
        (void)c;
        return Stream(std::move(s));
      }
    }
    Impl* impl;
    std::shared_ptr<ssl::context> ctx;  // the stream refers to it: keep it alive across a reload
    Stream stream;
    beast::flat_buffer buffer;
    std::unique_ptr<http::request_parser<http::string_body>> parser;
    uint64_t body_limit = kDefaultBodyLimit;
    http::response<http::string_body> res;

    void Start() {
      if constexpr (kTls) {
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
        stream.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
          if (ec) {  // plaintext on a TLS port, an untrusted client certificate, a scanner: drop it
            if (log::Enabled(log::Level::kDebug)) log::Debug("TLS handshake failed", {{"cause", ec.message()}});
            beast::error_code ignored;
            beast::get_lowest_layer(self->stream).socket().close(ignored);
            return;
          }
          self->Read();
        });
      } else {
        Read();
      }
    }

    void Read() {
      parser = std::make_unique<http::request_parser<http::string_body>>();
      // Any Content-Length passes the header phase; OnHeader applies the route's limit before the body is read.
      // (Not boost::none: Beast 1.74 compares `length > optional`, and anything is greater than none.)
      parser->body_limit(std::numeric_limits<std::uint64_t>::max());
      parser->header_limit(static_cast<uint32_t>(kMaxHeaderBytes * 2));
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(60));
      http::async_read_header(stream, buffer, *parser,
                              [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
    }

    /// Answers a request the server cannot take, then closes the connection (the rest of it is not read).
    void Refuse(int status, const std::string& code, const std::string& message) {
      Reply(status, "{\"code\":\"" + code + "\",\"message\":\"" + log::JsonEscape(message) + "\"}", false);
    }

    void OnHeader(beast::error_code ec) {
      if (ec == http::error::header_limit) {
        // Which part is too long: the request line (414) or the header fields (431).
        if (parser->get().target().empty()) {  // the start line never completed
          Refuse(414, "INVALID_ARGUMENT",
                 "request line longer than " + std::to_string(kMaxHeaderBytes) + " bytes (URL too long)");
        } else {
          Refuse(431, "INVALID_ARGUMENT", "request headers longer than " + std::to_string(kMaxHeaderBytes) + " bytes");
        }
        return;
      }
      if (ec) {
        if (ec != http::error::end_of_stream && ec != beast::error::timeout && ec != asio::error::eof &&
            ec != asio::error::connection_reset && ec != asio::error::operation_aborted) {
          Refuse(400, "INVALID_ARGUMENT", "malformed HTTP request: " + ec.message());
        }
        return;
      }
      const auto& h = parser->get();
      const std::string_view target(h.target().data(), h.target().size());
      if (target.size() > kMaxHeaderBytes) {
        Refuse(414, "INVALID_ARGUMENT",
               "request line longer than " + std::to_string(kMaxHeaderBytes) + " bytes (URL too long)");
        return;
      }
      const uint64_t limit =
          impl->body_limit
              ? impl->body_limit(std::string_view(h.method_string().data(), h.method_string().size()), target)
              : kDefaultBodyLimit;
      const auto length = parser->content_length();
      if (length && *length > limit) {
        Refuse(413, "RESOURCE_EXHAUSTED",
               "request body of " + std::to_string(*length) + " bytes is over the limit of " + std::to_string(limit) +
                   " bytes for " + std::string(h.method_string()) + " " +
                   std::string(target.substr(0, target.find('?'))) +
                   (limit > kDefaultBodyLimit ? " (--max-request-bytes)" : ""));
        return;
      }
      parser->body_limit(limit);  // chunked bodies: checked as they arrive
      body_limit = limit;
      http::async_read(stream, buffer, *parser,
                       [self = this->shared_from_this()](beast::error_code rec, size_t) { self->OnRead(rec); });
    }

    void OnRead(beast::error_code ec) {
      if (ec) {
        if (ec == http::error::body_limit) {
          Refuse(413, "RESOURCE_EXHAUSTED", "request body over the limit of " + std::to_string(body_limit) + " bytes");
        } else if (ec != http::error::end_of_stream && ec != beast::error::timeout && ec != asio::error::eof &&
                   ec != asio::error::connection_reset && ec != asio::error::operation_aborted) {
          Refuse(400, "INVALID_ARGUMENT", "malformed HTTP request: " + ec.message());
        }
        return;  // closed or timed out
      }
      auto req = parser->release();
      const bool keep_alive = req.keep_alive() && !impl->stopping;
      ++impl->active;
      HttpResponse out;
      try {
        out = impl->handler(ToRequest(req));
      } catch (const std::exception& e) {
        out.status = 500;
        log::Error("http handler failed", {{"cause", e.what()}});
        out.body = "{\"code\":\"INTERNAL\",\"message\":\"internal error\"}";
      }
      --impl->active;
      res = http::response<http::string_body>(static_cast<http::status>(out.status), req.version());
      res.set(http::field::server, "nexusd");
      res.set(http::field::content_type, out.content_type);
      for (const auto& [name, value] : out.headers) res.set(name, value);
      res.keep_alive(keep_alive);
      res.body() = std::move(out.body);
      res.prepare_payload();
      http::async_write(stream, res, [self = this->shared_from_this(), keep_alive](beast::error_code wec, size_t) {
        if (wec) return;
        if (keep_alive)
          self->Read();
        else
          self->Close();
      });
    }

    void Reply(int status, std::string body, bool keep_alive) {
      res = http::response<http::string_body>(static_cast<http::status>(status), 11);
      res.set(http::field::content_type, "application/json");
      res.keep_alive(keep_alive);
      res.body() = std::move(body);
      res.prepare_payload();
      http::async_write(stream, res, [self = this->shared_from_this()](beast::error_code, size_t) { self->Close(); });
    }

    void Close() {
      beast::error_code ec;
      beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  };
};

HttpServer::HttpServer(std::string listen, int threads, HttpHandler handler, HttpTlsOptions tls,
                       HttpBodyLimit body_limit)
    : impl_(std::make_unique<Impl>()) {
  impl_->listen = std::move(listen);
  impl_->body_limit = std::move(body_limit);
  impl_->threads = threads < 1 ? 1 : threads;
  impl_->handler = std::move(handler);
  impl_->tls = std::move(tls);
  if (!impl_->tls.cert_file.empty()) impl_->tls_context = impl_->LoadTls();
}

void HttpServer::ReloadTls() {
  if (impl_->tls.cert_file.empty()) return;
  auto ctx = impl_->LoadTls();  // throws: the old context stays
  std::lock_guard<std::mutex> lock(impl_->tls_mu);
  impl_->tls_context = std::move(ctx);
}

HttpServer::~HttpServer() { Stop(std::chrono::milliseconds(0)); }

int HttpServer::Start() {
  const auto colon = impl_->listen.rfind(':');
  std::string host = impl_->listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const auto port = static_cast<unsigned short>(std::stoi(impl_->listen.substr(colon + 1)));
  tcp::resolver resolver(impl_->ioc);
  beast::error_code ec;
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) throw std::runtime_error("HTTP: cannot resolve " + impl_->listen + ": " + ec.message());
  const tcp::endpoint ep = results.begin()->endpoint();
  impl_->acceptor = std::make_unique<tcp::acceptor>(impl_->ioc);
  impl_->acceptor->open(ep.protocol(), ec);
  if (!ec) impl_->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor->bind(ep, ec);
  if (!ec) impl_->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("HTTP: cannot listen on " + impl_->listen + ": " + ec.message());
  const int bound = impl_->acceptor->local_endpoint().port();
  impl_->guard =
      std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(impl_->ioc.get_executor());
  impl_->Accept();
  for (int i = 0; i < impl_->threads; ++i) impl_->workers.emplace_back([this] { impl_->ioc.run(); });
  return bound;
}

void HttpServer::Stop(std::chrono::milliseconds grace) {
  if (!impl_->acceptor || impl_->stopping.exchange(true)) return;
  asio::post(impl_->ioc, [this] {
    beast::error_code ec;
    impl_->acceptor->close(ec);
  });
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (impl_->active > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  impl_->guard.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->workers) {
    if (t.joinable()) t.join();
  }
  impl_->workers.clear();
}

}  // namespace nexus::server
