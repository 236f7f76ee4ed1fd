// TcpRelay, accept side: the listeners (opened at start and by reloads, closed by reloads and
// drains), multishot accept per listener, the connection cap shared by the workers, and the
// pause when file descriptors run out.
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "net/engine/classify.hpp"
#include "net/policy/listen_socket.hpp"
#include "net/tcp/tcp_relay.hpp"

namespace fp::net {
namespace {

constexpr std::uint64_t kFdLogMs = 10000;  // out-of-fd log lines: at most one per 10 s

}  // namespace

void TcpRelay::add_listener(const TcpListenerSettings& cfg) {
    if (listeners_.size() > UINT16_MAX)  // Conn::listener
        throw std::system_error(EMFILE, std::generic_category(),
                                "listener '" + cfg.name + "': too many listeners since start");
    Listener& l = listeners_.emplace_back();
    l.cfg = std::make_shared<const TcpListenerSettings>(cfg);
    reset_balance(l);
    try {
        l.fd = Fd(tcp_listen_socket(cfg));
    } catch (...) {
        listeners_.pop_back();
        throw;
    }
    if (started_) arm_accept(unsigned(listeners_.size() - 1));
}

// Accepting ends: the socket stops listening at once (shutdown: the kernel refuses new
// connections, clients still in its backlog are reset, and the address is free for whoever binds
// it next, before the ring has closed the fd). Its connections go on; the slot stays (a late
// CQE must not find another listener there).
void TcpRelay::close_listener(Listener& l) noexcept {
    if (l.fd.get() < 0) return;
    ::shutdown(l.fd.get(), SHUT_RDWR);
    if (io_uring_sqe* s = reactor_.submit(Op::kMisc))
        io_uring_prep_cancel_fd(s, l.fd.get(), IORING_ASYNC_CANCEL_ALL);
    reactor_.close_fd(l.fd.release());  // the cancelled accept holds its own file reference
}

std::string TcpRelay::reconfigure(const std::vector<TcpListenerSettings>& next) noexcept {
    std::string errors;
    try {
        reserve(next);
    } catch (const std::exception& e) {
        return std::string("tcp: ") + e.what();
    }
    std::vector<bool> kept(listeners_.size(), false);
    for (const TcpListenerSettings& cfg : next) {
        unsigned i = 0;
        for (; i < listeners_.size(); ++i) {
            const Listener& l = listeners_[i];
            if (!kept[i] && l.fd.get() >= 0 && l.cfg->listen == cfg.listen &&
                l.cfg->share_port == cfg.share_port)
                break;
        }
        try {
            if (i < listeners_.size()) {
                if (listeners_[i].cfg->keepalive.client || cfg.keepalive.client)
                    set_keepalive(listeners_[i].fd.get(), cfg.keepalive, cfg.keepalive.client);
                listeners_[i].cfg = std::make_shared<const TcpListenerSettings>(cfg);
                reset_balance(listeners_[i]);
                kept[i] = true;
            } else {
                add_listener(cfg);
            }
        } catch (const std::exception& e) {
            errors += errors.empty() ? "" : "; ";
            errors += e.what();
        }
    }
    for (unsigned i = 0; i < kept.size(); ++i)
        if (!kept[i]) close_listener(listeners_[i]);
    // Kept listeners whose accepts now need the client's address, or no longer do.
    if (started_) rearm_accepts();
    return errors;
}

void TcpRelay::arm_accept(unsigned listener) noexcept {
    const int fd = listeners_[listener].fd.get();
    if (fd < 0) return;  // removed by a reload, or drained
    io_uring_sqe* s = reactor_.submit(Op::kAccept, listener);
    if (!s) return;
    Listener& l = listeners_[listener];
    l.armed_direct = accepts_direct(*l.cfg);
    if (l.armed_direct)
        io_uring_prep_multishot_accept_direct(s, fd, nullptr, nullptr, 0);
    else
        io_uring_prep_multishot_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
}

// A full table cannot make a client wait in the backlog, as a full fd table does: the kernel
// accepts first and drops the connection when its descriptor finds no entry. So accepts make
// direct descriptors only while the table has room for a whole listen backlog; below that they
// make plain fds (accepting pauses on EMFILE), and direct ones again once the table has emptied
// (tick).
bool TcpRelay::accepts_direct(const TcpListenerSettings& cfg) const noexcept {
    return direct_ && direct_used_ + kAcceptHeadroom < direct_files_ && !log_ &&
           cfg.balancing.balance != Balance::kSourceHash && !cfg.policy.any() && !cfg.send_proxy &&
           !cfg.accept_proxy.enabled;
}

// Listeners whose multishot accept makes the other kind of descriptor than it should now are
// armed again (their multishot ends; on_accept re-arms it).
void TcpRelay::rearm_accepts() noexcept {
    for (unsigned i = 0; i < listeners_.size(); ++i) {
        Listener& l = listeners_[i];
        if (l.fd.get() < 0 || l.paused || stopping_ || accepts_direct(*l.cfg) == l.armed_direct)
            continue;
        if (io_uring_sqe* s = reactor_.submit(Op::kMisc))
            io_uring_prep_cancel64(s, Tag{Op::kAccept, 0, i, 0}.pack(), 0);
    }
}

void TcpRelay::on_accept(unsigned listener, io_uring_cqe* cqe) noexcept {
    const Verdict v = classify(Op::kAccept, cqe->res);
    const bool direct = listeners_[listener].armed_direct;  // (before a re-arm changes it)
    if (Reactor::final(cqe)) {
        if (v == Verdict::kOutOfFds) out_of_fds(listener, -cqe->res);
        if (!stopping_ && !listeners_[listener].paused)
            arm_accept(listener);  // re-arm the multishot
    }
    if (v != Verdict::kOk) return;
    ++open_fds_;
    if (direct && ++direct_used_ + kAcceptHeadroom >= direct_files_ && !Reactor::final(cqe))
        rearm_accepts();  // the table fills: plain fds from now on
    if (stopping_) return close_fd(cqe->res, direct);
    open_conn(listener, cqe->res, direct);
}

// No file descriptor for a new connection (the accept, or its upstream socket): stop accepting
// on that listener for kAcceptPauseMs rather than accept clients only to drop them; they wait in
// the listen backlog. Counted, and logged at most once per kFdLogMs per worker.
void TcpRelay::out_of_fds(unsigned listener, int err) noexcept {
    stats_.fd_exhausted.add();
    Listener& l = listeners_[listener];
    if (l.paused) return;
    l.paused = true;
    if (!stopping_) {  // (draining: nothing to pause, but the resume retries the waiters)
        stats_.accept_pauses.add();
        if (io_uring_sqe* s = reactor_.submit(Op::kMisc))  // ends the multishot accept
            io_uring_prep_cancel64(s, Tag{Op::kAccept, 0, listener, 0}.pack(), 0);
    }
    if (io_uring_sqe* s = reactor_.submit(Op::kAcceptResume, listener))
        io_uring_prep_timeout(s, &accept_pause_ts_, 0, 0);
    const std::uint64_t now = reactor_.now_ms();
    if (fd_logged_ms_ && now - fd_logged_ms_ < kFdLogMs) return;
    fd_logged_ms_ = now;
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    std::fprintf(stderr,
                 "fragproxy: worker %u: listener '%s': %s (RLIMIT_NOFILE %llu, %u connections "
                 "live): accepting paused %llu ms, new clients wait in the backlog\n",
                 index_, l.cfg->name.c_str(), ::strerrordesc_np(err),
                 static_cast<unsigned long long>(rl.rlim_cur), conns_.live(),
                 static_cast<unsigned long long>(kAcceptPauseMs));
}

// Accepting resumes, and the connections that found no fd for their upstream socket try again
// (they waited like clients in the backlog: nothing was dropped), also while draining: they are
// established client connections.
void TcpRelay::on_accept_resume(unsigned listener) noexcept {
    listeners_[listener].paused = false;
    if (!stopping_) arm_accept(listener);  // draining: no accepts, but the waiters still connect
    const std::size_t n = fd_waiters_.size();  // those that fail again are appended
    for (std::size_t i = 0; i < n; ++i) {
        const Waiter w = fd_waiters_[i];
        Conn* c = conns_.find(w.slot, w.gen);
        if (c && c->state == State::kFdWait) connect_upstream(w.slot);
    }
    fd_waiters_.erase(fd_waiters_.begin(), fd_waiters_.begin() + std::ptrdiff_t(n));
}

// A new client: the listener's source policy (allow/deny, per-source cap and rate), then its
// max_connections, before any upstream is touched; then the balance picks its upstream. On an
// accept_proxy listener the policy waits for the client the PROXY header names (kProxyHeader);
// on a listener with routes the pick waits for the ClientHello (kClientHello).
void TcpRelay::open_conn(unsigned listener, int client_fd, bool direct) noexcept {
    Listener& l = listeners_[listener];
    const TcpListenerSettings& cfg = *l.cfg;
    ListenerCounters& lc = cfg.shared->per_worker[index_];
    const bool proxied = cfg.accept_proxy.enabled;
    const bool routed = cfg.routing.enabled();
    AccessAddr client, local;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    auto* sa = reinterpret_cast<sockaddr*>(&ss);
    // The multishot accept gives no address: one getpeername, for what needs it.
    const bool by_source = cfg.balancing.balance == Balance::kSourceHash;
    if (!direct && (log_ || by_source || cfg.policy.any() || cfg.send_proxy || proxied) &&
        ::getpeername(client_fd, sa, &len) == 0)
        client = AccessAddr::of(sa);
    len = sizeof ss;
    // The address it connected to is the listener's, unless that is a wildcard.
    if (cfg.send_proxy && !cfg.listen.unspecified())
        local = AccessAddr::of(cfg.listen);
    else if (cfg.send_proxy && !direct && ::getsockname(client_fd, sa, &len) == 0)
        local = AccessAddr::of(sa);
    if (proxied && cfg.accept_proxy.trusted && !cfg.accept_proxy.trusted->allowed(client))
        return reject(l, client, client_fd, direct, lc.untrusted);
    Counter* refused = proxied ? nullptr : refusal(cfg, client);
    if (refused) return reject(l, client, client_fd, direct, *refused);
    const std::uint16_t up = proxied || routed ? 0 : pick_upstream(l, cfg, -1, client);
    auto& count = cfg.shared->connections;
    const bool full = conns_.full();
    const bool none = up == Balancer::kNone;  // every upstream out (health checks)
    if (none || full || count.fetch_add(1, std::memory_order_relaxed) >= cfg.max_connections) {
        if (!none && !full) count.fetch_sub(1, std::memory_order_relaxed);
        if (!proxied && cfg.policy.limits()) cfg.shared->sources->release(client);
        return reject(l, client, client_fd, direct, none ? lc.no_upstream : lc.rejected);
    }
    const std::uint32_t slot = *conns_.open();
    Conn& c = conns_[slot];
    c.listener = std::uint16_t(listener);
    c.cfg = l.cfg;
    c.client = client;
    c.local = local;
    c.source_counted = !proxied && cfg.policy.limits();
    c.last_active = c.started_ms = reactor_.now_ms();
    c.side[0].fd = client_fd;
    c.side[0].direct = direct;
    if (direct) stats_.direct_sides.add();
    c.upstream = up;
    lc.accepted.add();
    stats_.accepted.add();  // TCP_NODELAY: inherited from the listener
    if (!proxied && !routed) {
        // send_proxy: the client is read while the upstream connects, so that its first bytes
        // leave with the header in one send (one segment and one wakeup of the upstream).
        if (cfg.send_proxy) arm_recv(c, slot, 0);
        if (c.state == State::kClosing) return;
        return connect_upstream(slot);
    }
    // Its PROXY header or ClientHello first (tick: their timeouts).
    set_state(c, proxied ? State::kProxyHeader : State::kClientHello);
    arm_recv(c, slot, 0);
}

void TcpRelay::reset_balance(Listener& l) noexcept {
    const TcpListenerSettings& cfg = *l.cfg;
    l.balancer.reset(cfg.upstreams.size(), index_ + 1);
    l.routes.resize(cfg.routing.routes.size());
    for (std::size_t r = 0; r < l.routes.size(); ++r)
        l.routes[r].reset(cfg.routing.routes[r].count, index_ + 1 + r);
}

std::uint16_t TcpRelay::pick_upstream(Listener& l, const TcpListenerSettings& cfg, int route,
                                      const AccessAddr& client) noexcept {
    const Balancing& b = cfg.balancing;
    std::size_t first = 0, count = cfg.upstreams.size();
    const MaglevTable* table = b.maglev.get();
    Balancer* balancer = &l.balancer;
    if (route >= 0) {
        const Route& r = cfg.routing.routes[std::size_t(route)];
        first = r.first;
        count = r.count;
        table = r.maglev.get();
        // (a connection accepted before a reload keeps its settings: its route may be past the
        // listener's new ones; it gets a state of its own then, as a new listener's would)
        if (std::size_t(route) >= l.routes.size()) l.routes.resize(std::size_t(route) + 1);
        balancer = &l.routes[std::size_t(route)];
    }
    const std::uint64_t hash = b.balance == Balance::kSourceHash
                                   ? hash_bytes({client.addr, client.family == AF_INET ? 4u : 16u})
                                   : 0;
    const auto& shared = cfg.upstream_shared;
    const std::uint16_t i = balancer->pick(
        b.balance, std::span(b.weights).subspan(first, count), table, hash,
        [&](std::size_t k) { return shared[first + k]->active(); },
        [&](std::size_t k) { return shared[first + k]->usable(); });
    return i == Balancer::kNone ? i : std::uint16_t(first + i);
}

Counter* TcpRelay::refusal(const TcpListenerSettings& cfg, const AccessAddr& client) noexcept {
    ListenerCounters& lc = cfg.shared->per_worker[index_];
    if (cfg.policy.acl && !cfg.policy.acl->allowed(client)) return &lc.denied;
    if (!cfg.policy.limits()) return nullptr;
    switch (cfg.shared->sources->admit(client, cfg.policy.max_connections, cfg.policy.rate,
                                       reactor_.now_ms())) {
        case SourceTable::Verdict::kTooMany:
            return &lc.source_capped;
        case SourceTable::Verdict::kTooFast:
            return &lc.source_rate_limited;
        case SourceTable::Verdict::kOk:
            break;
    }
    return nullptr;
}

// Refused at accept: closed at once (the client sees the connection close), counted by reason,
// logged.
void TcpRelay::reject(Listener& l, const AccessAddr& client, int client_fd, bool direct,
                      Counter& reason) noexcept {
    stats_.refused.add();
    reason.add();
    if (log_) {
        AccessRecord r;
        r.start_ms = r.end_ms = reactor_.now_ms();
        r.client = client;
        r.end = AccessEnd::kRejected;
        r.set_listener(l.cfg->name);
        log_->push(r);
    }
    close_fd(client_fd, direct);
}

// The upstream a connection is assigned to, in that upstream's active gauge (least_conn,
// random2); -1 takes it out.
void TcpRelay::count_upstream(Conn& c, std::int32_t upstream) noexcept {
    if (c.counted == upstream) return;
    if (c.counted >= 0)
        c.cfg->upstream_shared[std::size_t(c.counted)]->per_worker[index_].active.sub();
    if (upstream >= 0)
        c.cfg->upstream_shared[std::size_t(upstream)]->per_worker[index_].active.add();
    c.counted = upstream;
}

}  // namespace fp::net
