#include "app/admin.hpp"

#include <pthread.h>

#include <memory>
#include <sstream>
#include <system_error>

#include "app/metrics.hpp"
#include "app/proxy.hpp"

namespace fp::app {
namespace {

std::string reply(int code, const char* reason, const std::string& type, const std::string& body,
                  const char* extra = "") {
    std::ostringstream o;
    o << "HTTP/1.1 " << code << ' ' << reason << "\r\nContent-Type: " << type
      << "\r\nContent-Length: " << body.size() << "\r\n"
      << extra << "Connection: close\r\n\r\n"
      << body;
    return o.str();
}

asio::ip::tcp::endpoint endpoint_of(const net::SockAddr& a) {
    asio::ip::tcp::endpoint e;
    std::memcpy(e.data(), a.sa(), a.len);
    e.resize(a.len);
    return e;
}

// One connection: read the request head (bounded in size and time), answer, close.
class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(asio::ip::tcp::socket socket, const AdminServer& server)
        : socket_(std::move(socket)),
          timer_(socket_.get_executor()),
          buf_(AdminServer::kMaxRequest),
          server_(server) {}

    void start() {
        auto self = shared_from_this();
        timer_.expires_after(AdminServer::kRequestTimeout);
        timer_.async_wait([self](std::error_code ec) {
            if (!ec) self->finish(reply(408, "Request Timeout", "text/plain", "timeout\n"));
        });
        asio::async_read_until(socket_, buf_, "\r\n\r\n",
                               [self](std::error_code ec, std::size_t n) { self->on_head(ec, n); });
    }

  private:
    void on_head(std::error_code ec, std::size_t n) {
        if (done_) return;
        if (ec == asio::error::not_found)  // the head outgrew kMaxRequest
            return finish(
                reply(431, "Request Header Fields Too Large", "text/plain", "request too large\n"));
        if (ec) return finish("");
        std::string head(asio::buffers_begin(buf_.data()),
                         asio::buffers_begin(buf_.data()) + static_cast<std::ptrdiff_t>(n));
        finish(server_.respond(head));
    }
    void finish(std::string response) {
        if (done_) return;
        done_ = true;
        timer_.cancel();
        out_ = std::move(response);
        auto self = shared_from_this();
        asio::async_write(socket_, asio::buffer(out_), [self](std::error_code, std::size_t) {
            std::error_code ignored;
            self->socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
            self->socket_.close(ignored);
        });
    }

    asio::ip::tcp::socket socket_;
    asio::steady_timer timer_;
    asio::streambuf buf_;
    std::string out_;
    bool done_ = false;
    const AdminServer& server_;
};

}  // namespace

AdminServer::AdminServer(const net::SockAddr& addr, const Proxy& proxy, Reload reload)
    : proxy_(proxy), reload_(std::move(reload)), acceptor_(io_) {
    try {
        auto e = endpoint_of(addr);
        acceptor_.open(e.protocol());
        acceptor_.set_option(asio::socket_base::reuse_address(true));
        acceptor_.bind(e);
        acceptor_.listen();
    } catch (const std::system_error& err) {
        throw std::system_error(err.code(), "admin endpoint on " + addr.str());
    }
    accept();
    thread_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "fp-admin");
        io_.run();
    });
}

AdminServer::~AdminServer() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
}

void AdminServer::accept() {
    acceptor_.async_accept([this](std::error_code ec, asio::ip::tcp::socket socket) {
        if (!ec) std::make_shared<Session>(std::move(socket), *this)->start();
        if (ec != asio::error::operation_aborted) accept();
    });
}

std::string AdminServer::address() const {
    const auto e = acceptor_.local_endpoint();
    const std::string host = e.address().to_string();
    return (e.address().is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(e.port());
}

std::string AdminServer::respond(const std::string& head) const {
    std::istringstream in(head);
    std::string method, target, version;
    in >> method >> target >> version;
    if (method.empty() || target.empty() || version.rfind("HTTP/1.", 0) != 0)
        return reply(400, "Bad Request", "text/plain", "bad request\n");
    target = target.substr(0, target.find('?'));
    if (target == "/reload") {
        if (method != "POST")
            return reply(405, "Method Not Allowed", "text/plain", "only POST\n", "Allow: POST\r\n");
        auto [ok, message] = reload_();
        if (!message.empty()) message += "\n";
        return ok ? reply(200, "OK", "text/plain", "reloaded\n" + message)
                  : reply(500, "Internal Server Error", "text/plain", "reload failed: " + message);
    }
    const bool known =
        target == "/metrics" || target == "/healthz" || target == "/ready" || target == "/config";
    if (!known) return reply(404, "Not Found", "text/plain", "not found\n");
    if (method != "GET")
        return reply(405, "Method Not Allowed", "text/plain", "only GET\n", "Allow: GET\r\n");
    if (target == "/metrics")
        return reply(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render_metrics(proxy_));
    if (target == "/healthz") {
        const std::string why = proxy_.health();
        return why.empty() ? reply(200, "OK", "text/plain", "ok\n")
                           : reply(503, "Service Unavailable", "text/plain", why + "\n");
    }
    if (target == "/ready")
        return proxy_.draining() ? reply(503, "Service Unavailable", "text/plain", "draining\n")
                                 : reply(200, "OK", "text/plain", "ready\n");
    return reply(200, "OK", "text/yaml", describe(proxy_.config()));
}

}  // namespace fp::app
