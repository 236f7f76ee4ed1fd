// The TCP relay: what a worker does with each connection. A connection has two sides (client,
// upstream); bytes received on one are queued, as the very fragments they landed in, for sending
// on the other. One send in flight per side keeps the order.
//
// CQE results, per operation (anything not listed closes the connection):
//   recv     > 0 data; 0 peer FIN (half-close); -ENOBUFS no receive pages: wait for some, re-arm;
//            -ECANCELED our pause or close; -ECONNRESET/-EPIPE/-ETIMEDOUT peer gone: reset the
//            other
//   send     >= 0 bytes sent (a short send resubmits the rest); -ECANCELED/-EINTR after our
//            cancel for a collapse: nothing sent, collapse and resubmit; other < 0 peer gone:
//            reset the other
//   connect  0 connected; < 0 (refused, unreachable, timed out: -ECANCELED) next upstream, and
//            after the last one a clean close of the client
//   shutdown, cancel, link timeout: only their completion counts
//   socket   >= 0 the upstream fd; -EMFILE/-ENFILE: out of fds, accepting pauses; < 0: clean close
//
// A close discards nothing silently: a connection closed with data still queued (idle timeout,
// send stall, stop, errors) is reset (SO_LINGER 0) and counted as cut; FIN is sent only when
// every byte received was passed on.
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "alloc/frag_debug.hpp"
#include "net/uapi.hpp"
#include "net/worker.hpp"

namespace fp::net {
namespace {

// A send that has waited this long on its peer is stuck: its kernel buffers are clamped, and
// under pressure its queue collapsed.
constexpr std::uint64_t kStuckMs = 50;
// ... and once it has waited this long, the receive buffer feeding it is clamped too, which
// makes the kernel drop what it had advertised beyond that: only for connections surely stuck.
constexpr std::uint64_t kSurelyStuckMs = 250;

void set_nodelay(int fd) noexcept {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

void Worker::open_conn(unsigned listener, int client_fd) noexcept {
    const auto& l = settings_.listeners[listener];
    auto& count = shared_[listener].connections;
    bool full = free_slots_.empty() && conns_.size() == conns_.capacity();
    if (full || count.fetch_add(1, std::memory_order_relaxed) >= l.max_connections) {
        if (!full) count.fetch_sub(1, std::memory_order_relaxed);
        stats_.refused.add();
        return close_fd(client_fd);  // refused cleanly: the client sees the connection close
    }
    std::uint32_t slot;
    if (!free_slots_.empty()) {
        slot = free_slots_.back();
        free_slots_.pop_back();
    } else {
        slot = std::uint32_t(conns_.size());
        conns_.emplace_back();
    }
    Conn& c = conns_[slot];
    std::uint32_t gen = c.gen + 1;
    c.~Conn();
    new (&c) Conn{};
    c.gen = gen;
    c.live = true;
    c.listener = std::uint16_t(listener);
    c.upstream = rr_[listener]++;
    c.last_active = now_ms_;
    c.side[0].fd = client_fd;
    ++live_conns_;
    stats_.accepted.add();  // TCP_NODELAY: inherited from the listener
    connect_upstream(slot);
}

// The upstream socket comes from the ring (IORING_OP_SOCKET) where the kernel has it, so a new
// connection makes no syscall outside io_uring submission: socket, TCP_NODELAY (a socket
// command), connect with its linked timeout.
void Worker::connect_upstream(std::uint32_t slot) noexcept {
    Conn& c = conns_[slot];
    const auto& l = settings_.listeners[c.listener];
    const SockAddr& up = l.upstreams[c.upstream % l.upstreams.size()];
    if (ring_->features().socket_op) {
        io_uring_sqe* s = sqe(Op::kSocket, slot);
        if (!s) return close_conn(c, slot, false);
        io_uring_prep_socket(s, up.family(), SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
        ++c.pending;
        return;
    }
    int fd = ::socket(up.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) return wait_for_fd(c, slot, errno);
    if (fd < 0) return close_conn(c, slot, false);
    ++open_fds_;
    c.side[1].fd = fd;
    set_nodelay(fd);
    start_connect(c, slot, fd);
}

void Worker::on_socket(Conn& c, std::uint32_t slot, int res) noexcept {
    --c.pending;
    if (res >= 0) {
        ++open_fds_;
        c.side[1].fd = res;
    }
    if (c.closing) return maybe_finish(c, slot);
    if (res == -EMFILE || res == -ENFILE) return wait_for_fd(c, slot, -res);
    if (res < 0) return close_conn(c, slot, false);
    static constexpr int kOne = 1;
    io_uring_sqe* q = sockopt_cmd_ ? sqe(Op::kSockopt, slot) : nullptr;
    if (q) {
        uapi::prep_setsockopt(q, res, IPPROTO_TCP, TCP_NODELAY, &kOne);
        ++c.pending;
    } else {
        set_nodelay(res);
    }
    start_connect(c, slot, res);
}

// No fd for the upstream socket: the client waits (accepting pauses) and the socket is tried
// again when accepting resumes, rather than accepting a client only to drop it.
void Worker::wait_for_fd(Conn& c, std::uint32_t slot, int err) noexcept {
    out_of_fds(c.listener, err);
    c.fd_wait = true;
    fd_waiters_.push_back(slot);
}

void Worker::on_sockopt(Conn& c, std::uint32_t slot, int res) noexcept {
    --c.pending;
    if (res < 0 && res != -ECANCELED && c.side[1].fd >= 0) {
        sockopt_cmd_ = false;  // a kernel before 6.7: plain setsockopt from now on
        set_nodelay(c.side[1].fd);
    }
    maybe_finish(c, slot);
}

void Worker::start_connect(Conn& c, std::uint32_t slot, int fd) noexcept {
    const auto& l = settings_.listeners[c.listener];
    const SockAddr& up = l.upstreams[c.upstream % l.upstreams.size()];
    ring_->reserve(2);  // the connect and its timeout go in as one linked pair
    io_uring_sqe* s = sqe(Op::kConnect, slot);
    io_uring_sqe* t = s ? sqe(Op::kLinkTimeout, slot) : nullptr;
    if (!t) return close_conn(c, slot, false);
    io_uring_prep_connect(s, fd, up.sa(), up.len);
    s->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(t, &connect_ts_[c.listener], 0);
    io_uring_sqe_set_data64(t, Tag{Op::kLinkTimeout, 0, slot, c.gen}.pack());
    c.pending += 2;
}

void Worker::on_connect(Conn& c, std::uint32_t slot, int res) noexcept {
    --c.pending;
    if (c.closing) return maybe_finish(c, slot);
    if (res == 0) {
        c.connected = true;
        c.last_active = now_ms_;
        arm_recv(c, slot, 0);
        arm_recv(c, slot, 1);
        return;
    }
    stats_.upstream_failures.add();
    close_fd(c.side[1].fd);
    c.side[1].fd = -1;
    const auto& l = settings_.listeners[c.listener];
    if (++c.attempts < l.upstreams.size()) {
        ++c.upstream;
        return connect_upstream(slot);
    }
    linger_close(c, slot);
}

// A clean close of a client whose request cannot be served: closing a socket with unread data
// makes the kernel send RST, so send FIN first and read (and drop) what the client still sends
// until its FIN, the idle tick's linger limit, or an error; then close.
void Worker::linger_close(Conn& c, std::uint32_t slot) noexcept {
    c.lingering = true;
    c.last_active = now_ms_;
    shutdown_side(c, slot, 0);
    arm_recv(c, slot, 0);
}

void Worker::arm_recv(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (side.recv_armed || side.paused || side.read_eof || c.closing) return;
    if (recv_->offered() == 0) {  // nothing to receive into: wait for pages
        if (!side.starved) starved_.push_back(slot << 1 | s);
        side.starved = true;
        stats_.starved.add();
        return;
    }
    // What this side receives is queued on the other: the grant is that queue's room within the
    // worker's budget (a lingering close drops what it reads: no grant needed).
    const FragQueue& queue = c.side[s ^ 1].out;
    std::uint32_t g = c.lingering ? 0
                                  : MemoryBudget::grant(queue_limit(c), pool_->normal_bytes(),
                                                        queue.bytes, queued_, granted_);
    if (!c.lingering && g == 0) {  // resumes when its queue's send completes (on_send)
        side.paused = true;
        stats_.pressure_pauses.add();
        // Stopped while memory is tight, toward a peer that is not reading (the kernel still
        // holds what was sent to it): the kernel would go on buffering for this connection.
        const Side& dest = c.side[s ^ 1];
        const bool stuck = since(dest.progress_ms) >= kSurelyStuckMs;
        if (tight() && dest.clamped < 1 + stuck && peer_backlogged(dest.fd))
            clamp_buffers(c, s ^ 1, stuck);
        return;
    }
    io_uring_sqe* q = sqe(Op::kRecv, slot, s);
    if (!q) return close_conn(c, slot, true);
    // The kernel enforces the grant while memory is tight; otherwise the receive runs until
    // its grant is used up and is cancelled then (on_recv), as a plain backpressure pause: no
    // re-arm per grant on the common path.
    if (g && capped_recv_ && tight())
        uapi::prep_recv_multishot_capped(
            q, side.fd, std::min<std::uint32_t>(g, std::uint32_t(pool_->block_bytes())), g);
    else
        io_uring_prep_recv_multishot(q, side.fd, nullptr, 0, 0);
    q->flags |= IOSQE_BUFFER_SELECT;
    q->buf_group = recv_->group();
    side.recv_armed = true;
    side.starved = false;
    side.granted = g;
    granted_ += g;
    ++c.pending;
}

std::uint32_t Worker::queue_limit(const Conn& c) const noexcept {
    return MemoryBudget::queue_limit(level_, settings_.listeners[c.listener].max_inflight_bytes,
                                     pool_->normal_bytes(), queuing_);
}

// n bytes of the side's grant are used (received), or given back (the receive ended).
void Worker::take_grant(Side& side, std::uint32_t n) noexcept {
    n = std::min(n, side.granted);
    side.granted -= n;
    granted_ -= n;
}

void Worker::on_recv(Conn& c, std::uint32_t slot, unsigned s, io_uring_cqe* cqe) noexcept {
    Side& side = c.side[s];
    Side& other = c.side[s ^ 1];
    int res = cqe->res;
    const bool more = cqe->flags & IORING_CQE_F_MORE;
    if (res > 0) take_grant(side, std::uint32_t(res));
    if (!more) {
        --c.pending;
        side.recv_armed = false;
        take_grant(side, side.granted);  // what the receive did not use goes back
    }
    if (res == -EINVAL && capped_recv_ && !c.closing) {  // a kernel before multishot limits
        capped_recv_ = false;
        res = -ECANCELED;  // re-armed below, without limits
    }
    if (res > 0 && c.lingering) {
        recv_->free(recv_->take(std::uint16_t(cqe->flags >> IORING_CQE_BUFFER_SHIFT),
                                std::uint32_t(res), cqe->flags & uapi::kCqeBufMore));
    } else if (res > 0) {
        std::byte* frag = recv_->take(std::uint16_t(cqe->flags >> IORING_CQE_BUFFER_SHIFT),
                                      std::uint32_t(res), cqe->flags & uapi::kCqeBufMore);
        FragNode* n = c.closing ? nullptr : nodes_->get();
        if (!n) {
            recv_->free(frag);
            if (!c.closing)
                close_conn(c, slot, true);  // queue nodes exhausted: never drop silently
            return maybe_finish(c, slot);
        }
        queue_fragment(other, frag, std::uint32_t(res), n);
        (s ? stats_.bytes_upstream : stats_.bytes_client).add(std::uint64_t(res));
        c.last_active = now_ms_;
        kick_send(c, slot, s ^ 1);
        // Without kernel limits the receive goes on past its grant: cancel it. Queue nodes
        // running short stop it too (nodes kept for the sends of other queues).
        constexpr std::size_t kNodeReserve = 4096;
        if (more && (side.granted == 0 || nodes_->available() < kNodeReserve))
            pause_recv(c, slot, s);
    } else if (res == 0) {
        side.read_eof = true;
        if (c.lingering) return close_conn(c, slot, false);
        if (other.out.empty() && !other.sending) shutdown_side(c, slot, s ^ 1);
    } else if (res == -ENOBUFS) {
        if (!side.starved) starved_.push_back(slot << 1 | s);
        side.starved = true;
        stats_.starved.add();
    } else if (res != -ECANCELED && !c.closing) {
        return close_conn(c, slot, !c.lingering);
    }
    if (!side.recv_armed && !side.starved && res != 0) arm_recv(c, slot, s);
    check_done(c, slot);
}

void Worker::pause_recv(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (side.paused) return;
    side.paused = true;
    if (!side.recv_armed) return;
    io_uring_sqe* q = sqe(Op::kCancel, slot, s);
    if (!q) return;
    io_uring_prep_cancel64(q, Tag{Op::kRecv, s, slot, c.gen}.pack(), 0);
    io_uring_sqe_set_data64(q, Tag{Op::kCancel, s, slot, c.gen}.pack());
    ++c.pending;
}

void Worker::kick_send(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (side.sending || side.out.empty() || c.closing) return;
    unsigned n = 0;
    for (FragNode* f = side.out.head; f && n < kMaxIov; f = f->next, ++n)
        side.iov[n] = {f->frag + f->sent, f->len - f->sent};
    side.msg = {};
    side.msg.msg_iov = side.iov;
    side.msg.msg_iovlen = n;
    io_uring_sqe* q = sqe(Op::kSend, slot, s);
    if (!q) return close_conn(c, slot, true);
    io_uring_prep_sendmsg(q, side.fd, &side.msg, MSG_NOSIGNAL);
    side.sending = true;
    ++c.pending;
}

void Worker::on_send(Conn& c, std::uint32_t slot, unsigned s, int res) noexcept {
    Side& side = c.side[s];
    Side& source = c.side[s ^ 1];
    --c.pending;
    side.sending = false;
    if (c.closing) return maybe_finish(c, slot);
    const bool collapse_now = std::exchange(side.collapse, false);
    // Only collapse cancels sends (-ECANCELED, or -EINTR when the send was blocked in io-wq);
    // its cancel may also land on the send made after a collapse that ran early (the first send
    // completed before the cancel): resubmitted, nothing lost.
    if (res == -ECANCELED || res == -EINTR) res = 0;
    if (res < 0) return close_conn(c, slot, true);
    if (res > 0) {
        c.last_active = now_ms_;
        side.progress_ms = now_ms_;
    }
    auto left = std::uint32_t(res);
    side.out.bytes -= left;
    queued_ -= left;
    while (left > 0) {
        FragNode* f = side.out.head;
        std::uint32_t rest = f->len - f->sent;
        if (left < rest) {
            f->sent += left;
            break;
        }
        left -= rest;
        recv_->free(side.out.pop()->frag);
        nodes_->put(f);
    }
    if (side.out.empty() && res > 0) --queuing_;
    if (collapse_now) collapse(side);
    if (source.paused && side.out.bytes <= queue_limit(c) / 2) {
        source.paused = false;
        arm_recv(c, slot, s ^ 1);
    }
    if (!side.out.empty()) return kick_send(c, slot, s);
    if (source.read_eof) shutdown_side(c, slot, s);
    check_done(c, slot);
}

void Worker::shutdown_side(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (side.shut_wr || side.fd < 0 || c.closing) return;
    io_uring_sqe* q = sqe(Op::kShutdown, slot, s);
    if (!q) return close_conn(c, slot, true);
    io_uring_prep_shutdown(q, side.fd, SHUT_WR);
    side.shut_wr = true;
    ++c.pending;
}

// Both directions finished: each side sent FIN and we passed it on.
void Worker::check_done(Conn& c, std::uint32_t slot) noexcept {
    if (c.closing) return maybe_finish(c, slot);
    const Side& a = c.side[0];
    const Side& b = c.side[1];
    if (a.read_eof && b.read_eof && a.shut_wr && b.shut_wr && !a.sending && !b.sending)
        close_conn(c, slot, false);
}

// Cancels everything the connection has in flight; maybe_finish() frees it once the last CQE is in.
void Worker::close_conn(Conn& c, std::uint32_t slot, bool reset) noexcept {
    if (c.closing) return;
    c.closing = true;
    if (!c.side[0].out.empty() || !c.side[1].out.empty()) {  // data would be lost: never a FIN
        stats_.cut.add();
        reset = true;
    }
    if (reset) stats_.resets.add();
    for (Side& side : c.side) {
        if (side.fd < 0) continue;
        if (reset) {  // SO_LINGER 0: the close sends RST, so the peer learns of the reset
            linger lg{1, 0};
            ::setsockopt(side.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        io_uring_sqe* q = sqe(Op::kCancel, slot);
        if (!q) continue;
        io_uring_prep_cancel_fd(q, side.fd, IORING_ASYNC_CANCEL_ALL);
        ++c.pending;
    }
    maybe_finish(c, slot);
}

void Worker::maybe_finish(Conn& c, std::uint32_t slot) noexcept {
    if (!c.closing || c.pending > 0) return;
    for (Side& side : c.side) {
        drain_queue(side.out);
        if (side.fd >= 0) close_fd(side.fd);
        side.fd = -1;
    }
    c.live = false;
    free_slots_.push_back(slot);
    shared_[c.listener].connections.fetch_sub(1, std::memory_order_relaxed);
    --live_conns_;
    stats_.closed.add();
}

// A closing connection's queued fragments: one release per run of fragments on the same page.
void Worker::drain_queue(FragQueue& q) noexcept {
    if (!q.empty()) --queuing_;
    queued_ -= q.bytes;
    while (!q.empty()) {
        FragNode* first = q.pop();
        std::byte* page_start = first->frag;
        std::uint32_t run = 1;
        frag_debug::untrack(first->frag);
        nodes_->put(first);
        const std::size_t page_bytes = pool_->block_bytes();
        auto same_page = [&](const std::byte* p) {
            return (std::uintptr_t(p) / page_bytes) == (std::uintptr_t(page_start) / page_bytes);
        };
        while (!q.empty() && same_page(q.head->frag)) {
            FragNode* n = q.pop();
            frag_debug::untrack(n->frag);
            nodes_->put(n);
            ++run;
        }
        recv_->free_run(page_start, run);
    }
    q.bytes = 0;
}

void Worker::rearm_starved() noexcept {
    if (recv_->offered() == 0) return;
    auto pending = std::move(starved_);
    starved_.clear();
    starved_.reserve(pending.capacity());
    for (std::uint32_t v : pending) {
        std::uint32_t slot = v >> 1;
        unsigned s = v & 1;
        if (slot >= conns_.size()) continue;
        Conn& c = conns_[slot];
        if (!c.live || !c.side[s].starved) continue;
        c.side[s].starved = false;
        arm_recv(c, slot, s);
    }
}

}  // namespace fp::net

namespace fp::net {

// The fragment joins the side's send queue; a queue that was empty starts its send-stall clock
// and counts toward the memory budget's divisor.
void Worker::queue_fragment(Side& side, std::byte* frag, std::uint32_t len, FragNode* n) noexcept {
    if (side.out.empty()) {
        ++queuing_;
        side.progress_ms = now_ms_;
    }
    n->frag = frag;
    n->len = len;
    side.out.push(n);
    queued_ += len;
}

void Worker::update_pressure() noexcept {
    level_ = MemoryBudget::level(pool_->free_normal_bytes(), pool_->normal_bytes());
}

// Queues whose send has waited on its peer for kStuckMs while memory is tight: their kernel
// buffers are clamped (clamp_buffers), and under pressure the send is cancelled so on_send() can
// collapse the queue (the kernel may read an in-flight send's iovecs, so never under it) and
// send again.
void Worker::tend_stuck() noexcept {
    for (std::uint32_t slot = 0; slot < conns_.size(); ++slot) {
        Conn& c = conns_[slot];
        if (!c.live || c.closing) continue;
        for (unsigned s = 0; s < 2; ++s) {
            Side& side = c.side[s];
            if (!side.sending || since(side.progress_ms) < kStuckMs) continue;
            clamp_buffers(c, s, since(side.progress_ms) >= kSurelyStuckMs);
            if (level_ == Pressure::kBelow || side.collapse) continue;
            bool sparse = false;
            for (FragNode* n = side.out.head; n && !sparse; n = n->next)
                sparse = !n->compact;
            if (!sparse) continue;
            io_uring_sqe* q = sqe(Op::kCancel, slot, s);
            if (!q) return;
            io_uring_prep_cancel64(q, Tag{Op::kSend, s, slot, c.gen}.pack(), 0);
            io_uring_sqe_set_data64(q, Tag{Op::kCancel, s, slot, c.gen}.pack());
            side.collapse = true;
            ++c.pending;
        }
    }
}

// The queue toward side s holds data the budget will not let grow and its peer is behind: its
// kernel buffers stop growing too (setsockopts on this slow path only, once each per
// connection). Without it the kernel buffers for the stuck connection what fragproxy does not
// (autotuning grows each buffer to megabytes), and under tcp_mem pressure every connection of
// the host loses packets. First (`stuck` false) the send buffer toward the slow peer and the
// window of the socket feeding the queue (a window clamp drops nothing: the sender fills what
// was advertised, then waits). Once the send has not moved for kSurelyStuckMs, the feeding socket's
// receive buffer too: what was advertised beyond it is dropped and sent again later, which a
// stuck connection does not notice and which frees the kernel's memory.
void Worker::clamp_buffers(Conn& c, unsigned s, bool stuck) noexcept {
    constexpr int kClampBytes = 64 * 1024;
    Side& side = c.side[s];
    int feed = c.side[s ^ 1].fd;
    if (side.fd < 0 || feed < 0 || side.clamped >= 1 + stuck) return;
    if (side.clamped == 0) {
        ::setsockopt(side.fd, SOL_SOCKET, SO_SNDBUF, &kClampBytes, sizeof kClampBytes);
        ::setsockopt(feed, IPPROTO_TCP, TCP_WINDOW_CLAMP, &kClampBytes, sizeof kClampBytes);
    }
    if (stuck) ::setsockopt(feed, SOL_SOCKET, SO_RCVBUF, &kClampBytes, sizeof kClampBytes);
    side.clamped = std::uint8_t(1 + stuck);
}

// The kernel still holds at least 32 KiB sent to fd and not acknowledged: its peer is behind.
bool Worker::peer_backlogged(int fd) noexcept {
    int outq = 0;
    return fd >= 0 && ::ioctl(fd, SIOCOUTQ, &outq) == 0 && outq >= 32 * 1024;
}

// The kernel's tcp_collapse for a send queue: runs of fragments that pin shared pages for few
// bytes are copied into compact fragments of the worker's FragCache (up to one page each), so
// the receive pages they pinned go back to the pool once their other fragments are sent. A page
// the queue uses densely (half of it or more, in consecutive fragments) is left as it is. The
// only payload copy in fragproxy: on the stuck path, under pressure, counted.
void Worker::collapse(Side& side) noexcept {
    const std::size_t page = pool_->block_bytes();
    auto page_of = [page](const FragNode* n) { return std::uintptr_t(n->frag) / page; };
    auto dense = [&](FragNode* n) {  // this node and its successors on the same page
        std::size_t bytes = 0;
        for (FragNode* m = n; m && page_of(m) == page_of(n); m = m->next)
            bytes += m->len - m->sent;
        return bytes * 2 >= page;
    };
    for (FragNode* n = side.out.head; n;) {
        if (n->compact || dense(n)) {
            n->compact = true;
            n = n->next;
            continue;
        }
        std::uint32_t total = 0;
        FragNode* end = n;
        while (end && !end->compact && total + (end->len - end->sent) <= compact_->max_alloc())
            total += end->len - end->sent, end = end->next;
        auto* to = static_cast<std::byte*>(compact_->alloc(total));
        if (!to) return;  // no memory even for the copy: the queue stays as it is
        std::uint32_t off = 0;
        for (FragNode* m = n; m != end;) {
            FragNode* next = m->next;
            std::memcpy(to + off, m->frag + m->sent, m->len - m->sent);
            off += m->len - m->sent;
            recv_->free(m->frag);
            if (m != n) nodes_->put(m);
            m = next;
        }
        *n = FragNode{to, total, 0, true, end};
        if (!end) side.out.tail = n;
        stats_.collapses.add();
        stats_.collapsed_bytes.add(total);
        n = end;
    }
}

}  // namespace fp::net
