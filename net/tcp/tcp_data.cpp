// TcpRelay, data path: receives into the ring's pages, queues the fragments on the other side,
// sends them with sendmsg (one in flight per side), frees them when sent.
#include <cstring>

#include "net/engine/classify.hpp"
#include "net/engine/uapi.hpp"
#include "net/tcp/tcp_relay.hpp"

namespace fp::net {
namespace {

// Queue nodes kept back for the sends of other queues: a receive stops below this many.
constexpr std::size_t kNodeReserve = 4096;
// A starved receive re-armed with data waiting takes part of a page (the ring is consumed
// incrementally): this many re-arms per page on offer, oldest first, then the next batch.
constexpr std::size_t kRearmsPerPage = 4;

}  // namespace

// The fragments a receive completion filled (several for a bundle), in order, to `each`.
template <class Each>
void TcpRelay::take_each(const io_uring_cqe* cqe, Each&& each) noexcept {
    const unsigned n =
        recv_->take_each(std::uint16_t(cqe->flags >> IORING_CQE_BUFFER_SHIFT),
                         std::uint32_t(cqe->res), cqe->flags & uapi::kCqeBufMore, each);
    stats_.frags.add(n);
    if (n > 1) stats_.recv_bundles.add();
}

void TcpRelay::drop_recv(const io_uring_cqe* cqe) noexcept {
    take_each(cqe, [this](std::byte* frag, std::uint32_t) noexcept { recv_->free(frag); });
}

void TcpRelay::arm_recv(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (side.recv != Recv::kIdle || c.state == State::kClosing) return;
    if (recv_->offered() == 0) return starve(c, slot, s);  // nothing to receive into: wait
    // What this side receives is queued on the other: the grant is that queue's room within the
    // worker's budget (a lingering close drops what it reads: no grant needed).
    const bool lingering = c.state == State::kLingering;
    const FragQueue& queue = c.side[s ^ 1].out;
    const std::uint32_t g = lingering ? 0
                                      : MemoryBudget::grant(queue_limit(c), pool_->normal_bytes(),
                                                            queue.bytes, queued_, granted_);
    if (!lingering && g == 0) {  // resumes when its queue's send completes (on_send)
        side.recv = Recv::kPaused;
        return paused_by_budget(c, slot, s);
    }
    io_uring_sqe* q = reactor_.submit(conns_, Op::kRecv, slot, s);
    if (!q) return close_conn(c, slot, AccessEnd::kNone, true);
    // The kernel enforces the grant while memory is tight; otherwise the receive runs until
    // its grant is used up and is cancelled then (on_data), as a plain backpressure pause: no
    // re-arm per grant on the common path.
    if (g && capped_recv_ && tight())
        uapi::prep_recv_multishot_capped(
            q, side.fd, std::min<std::uint32_t>(g, std::uint32_t(pool_->block_bytes())), g);
    else
        io_uring_prep_recv_multishot(q, side.fd, nullptr, 0, 0);
    if (bundles_) q->ioprio |= uapi::kRecvsendBundle;
    q->flags |= IOSQE_BUFFER_SELECT;
    use(q, side);
    q->buf_group = recv_->group();
    side.recv = Recv::kArmed;
    side.granted = g;
    granted_ += g;
}

void TcpRelay::on_recv(Conn& c, std::uint32_t slot, unsigned s, io_uring_cqe* cqe) noexcept {
    Side& side = c.side[s];
    Side& other = c.side[s ^ 1];
    const int res = cqe->res;
    if (res > 0) take_grant(side, std::uint32_t(res));
    if (Reactor::final(cqe)) {
        side.recv = side.recv == Recv::kPausing ? Recv::kPaused : Recv::kIdle;
        take_grant(side, side.granted);  // what the receive did not use goes back
    }
    Verdict v = classify(Op::kRecv, res);
    if (v == Verdict::kUnsupported && capped_recv_ && c.state != State::kClosing) {
        capped_recv_ = false;  // a kernel before multishot limits: re-armed without them
        v = Verdict::kCancelled;
    }
    switch (v) {
        case Verdict::kOk:
            on_data(c, slot, s, cqe);
            break;
        case Verdict::kEnd:
            side.recv = Recv::kEof;
            if (c.end == AccessEnd::kNone)
                c.end = s == 0 ? AccessEnd::kClientClose : AccessEnd::kUpstreamClose;
            if (c.state == State::kLingering) return close_conn(c, slot, AccessEnd::kNone, false);
            if (c.state == State::kProxyHeader || c.state == State::kClientHello)
                // gone before its header or ClientHello was whole
                return close_conn(c, slot, AccessEnd::kRejected, false);
            if (c.state == State::kRelaying) set_state(c, State::kHalfClosed);
            if (other.out.empty() && other.send == Send::kIdle) shutdown_side(c, slot, s ^ 1);
            break;
        case Verdict::kNoBuffers:
            starve(c, slot, s);
            break;
        case Verdict::kCancelled:
            break;
        default:
            if (c.state != State::kClosing)
                return close_conn(c, slot, AccessEnd::kNone, c.state != State::kLingering);
    }
    if (side.recv == Recv::kIdle) arm_recv(c, slot, s);
    check_done(c, slot);
}

// res bytes arrived on side s: queued on the other side, as the fragments they landed in (one
// per buffer: several for a bundle).
void TcpRelay::on_data(Conn& c, std::uint32_t slot, unsigned s, io_uring_cqe* cqe) noexcept {
    Side& side = c.side[s];
    const auto len = std::uint32_t(cqe->res);
    // A lingering close drops an unserved client's rest; a closing connection keeps nothing.
    const bool keep = c.state != State::kLingering && c.state != State::kClosing;
    bool lost = false;  // a fragment found no queue node: never dropped silently
    take_each(cqe, [&](std::byte* frag, std::uint32_t n) noexcept {
        FragNode* node = keep && !lost ? nodes_->get() : nullptr;
        if (!node) {
            lost = keep;
            return recv_->free(frag);
        }
        queue_fragment(c.side[s ^ 1], frag, n, node);
    });
    if (!keep) return;
    if (lost) return close_conn(c, slot, AccessEnd::kNone, true);
    (s ? stats_.bytes_upstream : stats_.bytes_client).add(len);
    c.bytes[s] += len;
    ListenerCounters& lc = c.cfg->shared->per_worker[index_];
    (s ? lc.bytes_upstream : lc.bytes_client).add(len);
    c.last_active = reactor_.now_ms();
    kick_send(c, slot, s ^ 1);
    // Without kernel limits the receive goes on past its grant: cancel it. Queue nodes running
    // short stop it too (nodes kept for the sends of other queues).
    if (side.recv == Recv::kArmed && (side.granted == 0 || nodes_->available() < kNodeReserve))
        pause_recv(c, slot, s);
    if (c.state == State::kProxyHeader)
        read_proxy_header(c, slot);
    else if (c.state == State::kClientHello)
        read_client_hello(c, slot);
}

void TcpRelay::pause_recv(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (reactor_.cancel(conns_, Op::kRecv, slot, s, Op::kCancel)) side.recv = Recv::kPausing;
}

// The fragment joins the side's send queue; a queue that was empty starts its send-stall clock
// and counts toward the memory budget's divisor.
void TcpRelay::queue_fragment(Side& side, std::byte* frag, std::uint32_t len, FragNode* n,
                              bool front) noexcept {
    if (side.out.empty()) {
        ++queuing_;
        side.progress_ms = reactor_.now_ms();
    }
    n->frag = frag;
    n->len = len;
    n->sent = 0;
    if (front)
        side.out.push_front(n);
    else
        side.out.push(n);
    queued_ += len;
    if (side.out.bytes > queue_peak_) stats_.queue_peak.set(queue_peak_ = side.out.bytes);
}

void TcpRelay::kick_send(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (side.send != Send::kIdle || side.out.empty() || c.state == State::kClosing ||
        before_upstream(c))
        return;
    unsigned n = 0;
    std::uint32_t bytes = 0;
    for (FragNode* f = side.out.head; f && n < kMaxIov; f = f->next, ++n) {
        side.iov[n] = {f->frag + f->sent, f->len - f->sent};
        bytes += f->len - f->sent;
    }
    side.msg = {};
    side.msg.msg_iov = side.iov;
    side.msg.msg_iovlen = n;
    io_uring_sqe* q = reactor_.submit(conns_, Op::kSend, slot, s);
    if (!q) return close_conn(c, slot, AccessEnd::kNone, true);
    if (send_zc_ && bytes >= kZcMinBytes) {
        io_uring_prep_sendmsg_zc(q, side.fd, &side.msg, MSG_NOSIGNAL);
        q->ioprio |= uapi::kSendZcReportUsage;
        stats_.zc_sends.add();
    } else {
        io_uring_prep_sendmsg(q, side.fd, &side.msg, MSG_NOSIGNAL);
    }
    use(q, side);
    side.send = Send::kSending;
}

// A zero-copy send completes twice: its result (IORING_CQE_F_MORE: a notification follows), then
// the notification (IORING_CQE_F_NOTIF) once the kernel no longer reads the fragments' pages.
// Only then does the send count as done and are its fragments freed; the result waits in the
// side meanwhile (one send in flight per side).
void TcpRelay::on_send_cqe(Conn& c, std::uint32_t slot, unsigned s,
                           const io_uring_cqe* cqe) noexcept {
    if (cqe->flags & IORING_CQE_F_NOTIF) {
        if (std::uint32_t(cqe->res) & uapi::kNotifUsageZcCopied) stats_.zc_copied.add();
        return on_send(c, slot, s, c.side[s].zc_res);
    }
    if (cqe->flags & IORING_CQE_F_MORE) {
        c.side[s].zc_res = cqe->res;
        return;
    }
    on_send(c, slot, s, cqe->res);
}

void TcpRelay::on_send(Conn& c, std::uint32_t slot, unsigned s, int res) noexcept {
    Side& side = c.side[s];
    Side& source = c.side[s ^ 1];
    const bool collapse_now = side.send == Send::kCollapsing;
    side.send = Send::kIdle;
    if (c.state == State::kClosing) return maybe_finish(c, slot);
    const Verdict v = classify(Op::kSend, res);
    if (v == Verdict::kReset) return close_conn(c, slot, AccessEnd::kNone, true);
    // Only collapse cancels sends; its cancel may also land on the send made after a collapse
    // that ran early (the first send completed before the cancel): resubmitted, nothing lost.
    if (v == Verdict::kCancelled) res = 0;
    const std::uint64_t now = reactor_.now_ms();
    if (res > 0) {
        c.last_active = now;
        side.progress_ms = now;
        side.probed = 0;
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
    if (side.out.empty() && res > 0) {
        --queuing_;
        if (side.clamped) unclamp_buffers(c, s);
    }
    if (collapse_now) collapse(side);
    const bool paused = source.recv == Recv::kPaused || source.recv == Recv::kPausing;
    if (paused && side.out.bytes <= queue_limit(c) / 2) {
        // A receive still being cancelled re-arms when its last CQE arrives (on_recv).
        source.recv = source.recv == Recv::kPaused ? Recv::kIdle : Recv::kArmed;
        arm_recv(c, slot, s ^ 1);
    }
    if (!side.out.empty()) return kick_send(c, slot, s);
    if (source.recv == Recv::kEof) shutdown_side(c, slot, s);
    check_done(c, slot);
}

// A receive that waits for pages: re-armed by refill() when pages come back, in turn.
void TcpRelay::starve(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    c.side[s].recv = Recv::kStarved;
    starved_.push_back({slot, c.gen, s});
    stats_.starved.add();
}

void TcpRelay::refill() noexcept {
    if (recv_->offered() < recv_->entries()) recv_->replenish();
    if (starved()) rearm_starved();
}

// Oldest first, and no more than the pages on offer can serve: a re-armed receive with data
// waiting takes part of a page at once, so re-arming every starved side together would see most
// fail with ENOBUFS again (a storm of re-arms with thousands of connections).
void TcpRelay::rearm_starved() noexcept {
    std::size_t budget = std::size_t(recv_->offered()) * kRearmsPerPage;
    while (starved_head_ < starved_.size() && budget > 0) {
        const Waiter w = starved_[starved_head_++];
        Conn* c = conns_.find(w.slot, w.gen);
        if (!c || c->side[w.side].recv != Recv::kStarved) continue;  // closed meanwhile
        c->side[w.side].recv = Recv::kIdle;
        arm_recv(*c, w.slot, w.side);
        --budget;
    }
    if (starved_head_ == starved_.size()) {
        starved_.clear();
        starved_head_ = 0;
    } else if (starved_head_ * 2 > starved_.size()) {  // keep the FIFO's storage bounded
        starved_.erase(starved_.begin(), starved_.begin() + std::ptrdiff_t(starved_head_));
        starved_head_ = 0;
    }
}

}  // namespace fp::net
