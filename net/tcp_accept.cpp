// TcpRelay, accept side: multishot accept per listener, the connection cap shared by the
// workers, and the pause when file descriptors run out.
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>

#include "net/classify.hpp"
#include "net/tcp_relay.hpp"

namespace fp::net {
namespace {

constexpr std::uint64_t kFdLogMs = 10000;  // out-of-fd log lines: at most one per 10 s

}  // namespace

void TcpRelay::arm_accept(unsigned listener) noexcept {
    io_uring_sqe* s = reactor_.submit(Op::kAccept, listener);
    if (!s) return;
    io_uring_prep_multishot_accept(s, listen_fds_[listener].get(), nullptr, nullptr, SOCK_CLOEXEC);
}

void TcpRelay::on_accept(unsigned listener, io_uring_cqe* cqe) noexcept {
    const Verdict v = classify(Op::kAccept, cqe->res);
    if (Reactor::final(cqe)) {
        if (v == Verdict::kOutOfFds) out_of_fds(listener, -cqe->res);
        if (!stopping_ && !accept_paused_[listener]) arm_accept(listener);  // re-arm the multishot
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
    if (accept_paused_[listener]) return;
    accept_paused_[listener] = true;
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
                 index_, settings_.listeners[listener].name.c_str(), ::strerrordesc_np(err),
                 static_cast<unsigned long long>(rl.rlim_cur), conns_.live(),
                 static_cast<unsigned long long>(kAcceptPauseMs));
}

// Accepting resumes, and the connections that found no fd for their upstream socket try again
// (they waited like clients in the backlog: nothing was dropped), also while draining: they are
// established client connections.
void TcpRelay::on_accept_resume(unsigned listener) noexcept {
    accept_paused_[listener] = false;
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
    const auto& l = settings_.listeners[listener];
    auto& count = shared_[listener].connections;
    const bool full = conns_.full();
    if (full || count.fetch_add(1, std::memory_order_relaxed) >= l.max_connections) {
        if (!full) count.fetch_sub(1, std::memory_order_relaxed);
        stats_.refused.add();
        return close_fd(client_fd);  // refused cleanly: the client sees the connection close
    }
    const std::uint32_t slot = *conns_.open();
    Conn& c = conns_[slot];
    c.listener = std::uint16_t(listener);
    c.upstream = rr_[listener]++;
    c.last_active = reactor_.now_ms();
    c.side[0].fd = client_fd;
    stats_.accepted.add();  // TCP_NODELAY: inherited from the listener
    connect_upstream(slot);
}

}  // namespace fp::net
