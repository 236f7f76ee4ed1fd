#include "app/health.hpp"

#include <pthread.h>

#include <cstdio>
#include <cstring>

namespace fp::app {

// One address's check loop: connect, wait for the result or the timeout, note it, sleep.
struct HealthChecker::Probe : std::enable_shared_from_this<Probe> {
    Probe(asio::io_context& io, HealthChecker& owner, Target t)
        : target(std::move(t)), name(target.addr.str()), timer(io), socket(io), checker(owner) {}

    void start() { schedule(std::chrono::milliseconds(0)); }
    void stop() {
        stopped = true;
        timer.cancel();
        std::error_code ignored;
        socket.close(ignored);
    }
    void schedule(std::chrono::milliseconds after) {
        timer.expires_after(after);
        timer.async_wait([self = shared_from_this()](std::error_code ec) {
            if (!ec && !self->stopped) self->check();
        });
    }
    void check() {
        asio::ip::tcp::endpoint e;
        std::memcpy(e.data(), target.addr.sa(), target.addr.len);
        e.resize(target.addr.len);
        std::error_code ignored;
        socket.close(ignored);
        done = false;
        timer.expires_after(target.check.timeout);
        timer.async_wait([self = shared_from_this()](std::error_code ec) {
            if (ec || self->stopped || self->done) return;
            self->done = true;
            std::error_code ignore;
            self->socket.close(ignore);  // the connect completes with operation_aborted
            self->finish(false, "timed out");
        });
        socket.async_connect(e, [self = shared_from_this()](std::error_code ec) {
            if (self->stopped || self->done) return;
            self->done = true;
            self->timer.cancel();
            std::error_code ignore;
            self->socket.close(ignore);
            self->finish(!ec, ec ? ec.message() : "");
        });
    }
    void finish(bool ok, const std::string& why) {
        checker.note(*this, ok, why);
        if (!stopped) schedule(target.check.interval);
    }

    Target target;
    std::string name;
    asio::steady_timer timer;
    asio::ip::tcp::socket socket;
    HealthChecker& checker;
    std::uint32_t passed = 0, failed = 0;  // in a row
    bool logged_up = true;
    bool done = false, stopped = false;
};

HealthChecker::HealthChecker()
    : work_(asio::make_work_guard(io_)), thread_([this] {
          ::pthread_setname_np(::pthread_self(), "fp-health");
          io_.run();
      }) {}

HealthChecker::~HealthChecker() {
    asio::post(io_, [this] {
        for (auto& [addr, p] : probes_)
            p->stop();
        probes_.clear();
    });
    work_.reset();
    io_.stop();
    thread_.join();
}

void HealthChecker::configure(std::vector<Target> targets,
                              std::map<std::string, std::vector<net::UpstreamShared*>> of) {
    asio::post(io_, [this, targets = std::move(targets), of = std::move(of)]() mutable {
        std::map<std::string, std::shared_ptr<Probe>> next;
        for (Target& t : targets) {
            const std::string addr = t.addr.str();
            auto it = probes_.find(addr);
            if (it != probes_.end()) {  // kept: its streaks go on, with the new parameters
                it->second->target = std::move(t);
                next[addr] = std::move(it->second);
                probes_.erase(it);
                continue;
            }
            auto p = std::make_shared<Probe>(io_, *this, std::move(t));
            p->logged_up = p->target.shared->usable();
            p->start();
            next[addr] = std::move(p);
        }
        for (auto& [addr, p] : probes_) {  // no longer checked: stopped, and left in service
            p->stop();
            p->target.shared->fall.store(0, std::memory_order_relaxed);
            p->target.shared->up.store(true, std::memory_order_relaxed);
        }
        probes_ = std::move(next);
        listeners_of_ = std::move(of);
        log_listeners();
    });
}

void HealthChecker::note(Probe& p, bool ok, const std::string& why) {
    net::UpstreamShared& u = *p.target.shared;
    const net::HealthCheck& c = p.target.check;
    if (!u.usable() && p.logged_up) p.passed = 0;  // taken out by failed client connects
    if (ok) {
        p.failed = 0;
        ++p.passed;
        if (!u.usable() && p.passed >= c.rise) {
            u.failures.store(0, std::memory_order_relaxed);
            u.up.store(true, std::memory_order_relaxed);
        }
    } else {
        p.passed = 0;
        ++p.failed;
        if (u.usable() && p.failed >= c.fall) u.up.store(false, std::memory_order_relaxed);
    }
    const bool up = u.usable();
    if (up == p.logged_up) return;
    p.logged_up = up;
    if (up)
        std::fprintf(stderr, "fragproxy: health: upstream %s is up (%u checks passed)\n",
                     p.name.c_str(), p.passed);
    else if (p.failed >= c.fall)
        std::fprintf(stderr, "fragproxy: health: upstream %s is down (%u checks failed: %s)\n",
                     p.name.c_str(), p.failed, why.c_str());
    else
        std::fprintf(stderr, "fragproxy: health: upstream %s is down (%u client connects failed)\n",
                     p.name.c_str(), c.fall);
    log_listeners();
}

// A listener with no upstream left refuses every client: said once when it happens, and once
// when it ends.
void HealthChecker::log_listeners() {
    for (const auto& [name, ups] : listeners_of_) {
        bool down = !ups.empty();
        for (const net::UpstreamShared* u : ups)
            down &= !u->usable();
        bool& logged = listener_down_[name];
        if (down == logged) continue;
        logged = down;
        std::fprintf(stderr,
                     down ? "fragproxy: health: listener '%s': every upstream is down; new "
                            "clients are closed at once\n"
                          : "fragproxy: health: listener '%s': an upstream is up again\n",
                     name.c_str());
    }
}

}  // namespace fp::app
