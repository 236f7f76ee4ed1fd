#include "app/access_log.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <system_error>
#include <utility>

#include "app/json.hpp"

namespace fp::app {
namespace {

std::string address(const net::AccessAddr& a) {
    char host[INET6_ADDRSTRLEN] = {};
    if (a.family == 0 || !::inet_ntop(a.family, a.addr, host, sizeof host)) return "";
    const std::string port = std::to_string(a.port);
    return a.family == AF_INET6 ? "[" + std::string(host) + "]:" + port : host + (":" + port);
}

std::string iso_time(std::uint64_t wall_ms) {
    const auto secs = static_cast<std::time_t>(wall_ms / 1000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char out[40];
    const std::size_t n = std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(out + n, sizeof out - n, ".%03uZ", unsigned(wall_ms % 1000));
    return out;
}

std::uint64_t clock_ms(clockid_t id) {
    timespec ts{};
    ::clock_gettime(id, &ts);
    return std::uint64_t(ts.tv_sec) * 1000 + std::uint64_t(ts.tv_nsec) / 1000000;
}

}  // namespace

AccessLog::AccessLog(AccessLogSettings settings, unsigned workers)
    : settings_(std::move(settings)) {
    for (unsigned i = 0; i < workers; ++i)
        queues_.push_back(std::make_unique<net::AccessQueue>());
    fd_ = open_file();
    thread_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "fp-access-log");
        run();
    });
}

AccessLog::~AccessLog() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
    if (fd_ > 2) ::close(fd_);
}

int AccessLog::open_file() const {
    if (settings_.path == "-") return STDERR_FILENO;
    const int fd = ::open(settings_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "access_log: " + settings_.path);
    return fd;
}

std::string AccessLog::format(const net::AccessRecord& r, bool json, std::uint64_t wall_ms) {
    const std::string client = address(r.client), upstream = address(r.upstream);
    const std::uint64_t duration = r.end_ms - r.start_ms;
    const char* proto = r.udp ? "udp" : "tcp";
    if (json)
        return "{\"time\":\"" + iso_time(wall_ms) + "\",\"listener\":" + json_quoted(r.listener) +
               ",\"protocol\":\"" + proto +
               "\",\"client\":" + (client.empty() ? "null" : json_quoted(client)) +
               ",\"upstream\":" + (upstream.empty() ? "null" : json_quoted(upstream)) +
               ",\"duration_ms\":" + std::to_string(duration) +
               ",\"bytes_client_to_upstream\":" + std::to_string(r.bytes_to_upstream) +
               ",\"bytes_upstream_to_client\":" + std::to_string(r.bytes_to_client) +
               ",\"end\":\"" + net::access_end_name(r.end) + "\"}\n";
    auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
    return iso_time(wall_ms) + ' ' + r.listener + ' ' + proto + ' ' + or_dash(client) + ' ' +
           or_dash(upstream) + ' ' + std::to_string(duration) + "ms " +
           std::to_string(r.bytes_to_upstream) + ' ' + std::to_string(r.bytes_to_client) + ' ' +
           net::access_end_name(r.end) + '\n';
}

void AccessLog::run() {
    for (;;) {
        bool stopping;
        {
            std::unique_lock lock(mu_);
            cv_.wait_for(lock, kPass, [this] { return stop_; });
            stopping = stop_;
        }
        if (reopen_.exchange(false, std::memory_order_relaxed) && fd_ > 2) {
            try {
                const int fd = open_file();
                ::close(fd_);
                fd_ = fd;
            } catch (const std::exception& e) {  // the old file stays in use
                std::fprintf(stderr, "fragproxy: reopening the access log: %s\n", e.what());
            }
        }
        pass();
        if (stopping) return;
    }
}

// Everything the queues hold, as one write. A record's wall-clock time: now, less how long ago
// (on the workers' monotonic clock) it ended.
void AccessLog::pass() {
    buf_.clear();
    const std::uint64_t wall = clock_ms(CLOCK_REALTIME);
    const std::uint64_t mono = clock_ms(CLOCK_MONOTONIC_COARSE);
    std::uint64_t n = 0;
    net::AccessRecord r;
    for (auto& q : queues_)
        while (q->pop(r)) {
            const std::uint64_t ago = mono > r.end_ms ? mono - r.end_ms : 0;
            buf_ += format(r, settings_.json, wall - ago);
            ++n;
        }
    std::size_t off = 0;
    while (off < buf_.size()) {
        const ssize_t w = ::write(fd_, buf_.data() + off, buf_.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;  // a full disk: the lines are lost, the proxy goes on
        off += std::size_t(w);
    }
    written_.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace fp::app
