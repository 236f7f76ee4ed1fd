// TcpRelay, accept side: the listeners (opened at start and by reloads, closed by reloads and
// drains), multishot accept per listener, the connection cap shared by the workers, and the
// pause when file descriptors run out.
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <system_error>

#include "net/classify.hpp"
#include "net/listen_socket.hpp"
#include "net/tcp_relay.hpp"

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
    l.rr = std::uint16_t(index_);
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
                listeners_[i].cfg = std::make_shared<const TcpListenerSettings>(cfg);
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
    return errors;
}

void TcpRelay::arm_accept(unsigned listener) noexcept {
    const int fd = listeners_[listener].fd.get();
    if (fd < 0) return;  // removed by a reload, or drained
    io_uring_sqe* s = reactor_.submit(Op::kAccept, listener);
    if (!s) return;
    io_uring_prep_multishot_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
}

void TcpRelay::on_accept(unsigned listener, io_uring_cqe* cqe) noexcept {
    const Verdict v = classify(Op::kAccept, cqe->res);
    if (Reactor::final(cqe)) {
        if (v == Verdict::kOutOfFds) out_of_fds(listener, -cqe->res);
        if (!stopping_ && !listeners_[listener].paused)
            arm_accept(listener);  // re-arm the multishot
    }
    if (v != Verdict::kOk) return;
    ++open_fds_;
    if (stopping_) return close_fd(cqe->res);
    open_conn(listener, cqe->res);
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

void TcpRelay::open_conn(unsigned listener, int client_fd) noexcept {
    Listener& l = listeners_[listener];
    auto& count = l.cfg->shared->connections;
    const bool full = conns_.full();
    if (full || count.fetch_add(1, std::memory_order_relaxed) >= l.cfg->max_connections) {
        if (!full) count.fetch_sub(1, std::memory_order_relaxed);
        stats_.refused.add();
        l.cfg->shared->per_worker[index_].rejected.add();
        if (log_) log_rejected(l, client_fd);
        return close_fd(client_fd);  // refused cleanly: the client sees the connection close
    }
    const std::uint32_t slot = *conns_.open();
    Conn& c = conns_[slot];
    c.listener = std::uint16_t(listener);
    c.cfg = l.cfg;
    c.upstream = l.rr++;
    c.cfg->shared->per_worker[index_].accepted.add();
    c.last_active = c.started_ms = reactor_.now_ms();
    c.side[0].fd = client_fd;
    if (log_) {  // the multishot accept gives no address: one getpeername, with the log only
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (::getpeername(client_fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
            c.client = AccessAddr::of(reinterpret_cast<const sockaddr*>(&ss));
    }
    stats_.accepted.add();  // TCP_NODELAY: inherited from the listener
    connect_upstream(slot);
}

void TcpRelay::log_rejected(const Listener& l, int client_fd) noexcept {
    AccessRecord r;
    r.start_ms = r.end_ms = reactor_.now_ms();
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getpeername(client_fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
        r.client = AccessAddr::of(reinterpret_cast<const sockaddr*>(&ss));
    r.end = AccessEnd::kRejected;
    r.set_listener(l.cfg->name);
    log_->push(r);
}

}  // namespace fp::net
