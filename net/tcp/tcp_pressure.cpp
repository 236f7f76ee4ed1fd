// TcpRelay, memory: the budget's grants and pauses (memory_budget.hpp), and what is done for
// queues stuck behind slow peers: their kernel buffers clamped, and under pressure their
// fragments collapsed into compact copies so the receive pages they pin go back.
#include <linux/sockios.h>
#include <linux/tcp.h>  // (not netinet/tcp.h: its tcp_info lacks tcpi_snd_wnd)
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "net/tcp/tcp_relay.hpp"

namespace fp::net {
namespace {

// A send that has waited this long on its peer is stuck: its kernel buffers are clamped, and
// under pressure its queue collapsed.
constexpr std::uint64_t kStuckMs = 50;
// ... and once it has waited this long, the receive buffer feeding it is clamped too, which
// makes the kernel drop what it had advertised beyond that: only for connections surely stuck.
// Its sender then backs off (RTO doubling from 200 ms): a live peer that was merely slow for a
// moment (a loaded host) would pay seconds for it, so the wait is a full second.
constexpr std::uint64_t kSurelyStuckMs = 1000;
// Stuck queues are looked for this often once memory is tight (the scan visits every slot).
constexpr std::uint64_t kStuckScanMs = 10;
// What a clamped socket buffer (send, receive, window) is clamped to.
constexpr int kClampBytes = 64 * 1024;
// The kernel holds at least this much sent to a peer and not acknowledged: the peer is behind.
constexpr int kBackloggedBytes = 32 * 1024;

int sockopt(int fd, int level, int name) noexcept {
    int v = 0;
    socklen_t len = sizeof v;
    return ::getsockopt(fd, level, name, &v, &len) == 0 ? v : 0;
}

// A clamp below a few segments would hold a connection to one segment per delayed ACK (on
// loopback a segment is 64 KiB): at least four of the socket's own.
int clamp_bytes(int fd) noexcept {
    return std::max(kClampBytes, 4 * sockopt(fd, IPPROTO_TCP, TCP_MAXSEG));
}

// The peer advertises no room at all (a zero window): it is not reading. Unknown (a kernel
// before 5.4 reports no tcpi_snd_wnd) counts as closed, as before that check existed.
bool window_closed(int fd) noexcept {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return false;
    if (len < offsetof(tcp_info, tcpi_snd_wnd) + sizeof ti.tcpi_snd_wnd) return true;
    return ti.tcpi_snd_wnd == 0;
}

void set_buffer(int fd, int force, int plain, int bytes) noexcept {
    if (bytes <= 0) return;
    if (::setsockopt(fd, SOL_SOCKET, force, &bytes, sizeof bytes) != 0)
        ::setsockopt(fd, SOL_SOCKET, plain, &bytes, sizeof bytes);
}

}  // namespace

std::uint32_t TcpRelay::queue_limit(const Conn& c) const noexcept {
    return MemoryBudget::queue_limit(level_, c.cfg->max_inflight_bytes, pool_->normal_bytes(),
                                     queuing_);
}

// n bytes of the side's grant are used (received), or given back (the receive ended).
void TcpRelay::take_grant(Side& side, std::uint32_t n) noexcept {
    n = std::min(n, side.granted);
    side.granted -= n;
    granted_ -= n;
}

void TcpRelay::paused_by_budget(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    stats_.pressure_pauses.add();
    clamp_behind(c, slot, s);
}

// Side s's receive is paused by the budget. Stopped while memory is tight, toward a peer that is
// not reading (the kernel still holds what was sent to it): the kernel would go on buffering for
// this connection, so its buffers are clamped. On direct descriptors the plain fds for that are
// asked for here, both at once, and this runs again when they come (on_install).
void TcpRelay::clamp_behind(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    const Side& dest = c.side[s ^ 1];
    const bool stuck = reactor_.since(dest.progress_ms) >= kSurelyStuckMs;
    const bool more = dest.clamped == 0 || (stuck && dest.clamped == 1 && !dest.probed);
    if (!tight() || !more) return;
    const int fd = sys_fd(c, slot, s ^ 1), feed = sys_fd(c, slot, s);
    if (fd >= 0 && feed >= 0 && peer_backlogged(fd)) clamp_buffers(c, slot, s ^ 1, stuck);
}

void TcpRelay::tend() noexcept {
    level_ = MemoryBudget::level(pool_->free_normal_bytes(), pool_->normal_bytes());
    const std::uint64_t now = reactor_.now_ms();
    if (!tight() || now - last_stuck_scan_ms_ < kStuckScanMs) return;
    last_stuck_scan_ms_ = now;
    tend_stuck();
}

// Queues whose send has waited on its peer for kStuckMs while memory is tight: their kernel
// buffers are clamped (clamp_buffers), and under pressure the send is cancelled so on_send() can
// collapse the queue (the kernel may read an in-flight send's iovecs, so never under it) and
// send again. Not for kStuckMs after a collapse found no memory: a cancel then gains nothing.
void TcpRelay::tend_stuck() noexcept {
    for (std::uint32_t slot = 0; slot < conns_.size(); ++slot) {
        Conn& c = conns_[slot];
        if (!c.live || c.state == State::kClosing) continue;
        for (unsigned s = 0; s < 2; ++s) {
            Side& side = c.side[s];
            const std::uint64_t waited = reactor_.since(side.progress_ms);
            if (side.send == Send::kIdle || side.send == Send::kShut || waited < kStuckMs) continue;
            clamp_buffers(c, slot, s, waited >= kSurelyStuckMs);
            if (level_ == Pressure::kBelow || side.send == Send::kCollapsing ||
                reactor_.now_ms() < collapse_retry_ms_)
                continue;
            bool sparse = false;
            for (FragNode* n = side.out.head; n && !sparse; n = n->next)
                sparse = !n->compact;
            if (!sparse) continue;
            if (!reactor_.cancel(conns_, Op::kSend, slot, s, Op::kCancel)) return;
            side.send = Send::kCollapsing;
        }
    }
}

// The queue toward side s holds data the budget will not let grow and its peer is behind: its
// kernel buffers stop growing too (setsockopts on this slow path only, once each per
// connection). Without it the kernel buffers for the stuck connection what fragproxy does not
// (autotuning grows each buffer to megabytes), and under tcp_mem pressure every connection of
// the host loses packets. First (`stuck` false) the send buffer toward the slow peer and the
// window of the socket feeding the queue (a window clamp drops nothing: the sender fills what
// was advertised, then waits). Once the send has not moved for kSurelyStuckMs, the feeding
// socket's receive buffer too: what was advertised beyond it is dropped and sent again later,
// which a stuck connection does not notice and which frees the kernel's memory. The values
// before are kept: a peer that was only slow for a while gets them back (unclamp_buffers).
void TcpRelay::clamp_buffers(Conn& c, std::uint32_t slot, unsigned s, bool stuck) noexcept {
    Side& side = c.side[s];
    if (side.fd < 0 || c.side[s ^ 1].fd < 0 || side.clamped >= 1 + stuck) return;
    // Plain fds for the syscalls (a direct descriptor's comes back later: the next scan).
    const int fd = sys_fd(c, slot, s), feed = sys_fd(c, slot, s ^ 1);
    if (fd < 0 || feed < 0) return;
    if (side.clamped == 0) {
        side.sndbuf = sockopt(fd, SOL_SOCKET, SO_SNDBUF);
        side.window = sockopt(feed, IPPROTO_TCP, TCP_WINDOW_CLAMP);
        const int to_peer = clamp_bytes(fd), to_feed = clamp_bytes(feed);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &to_peer, sizeof to_peer);
        ::setsockopt(feed, IPPROTO_TCP, TCP_WINDOW_CLAMP, &to_feed, sizeof to_feed);
        stats_.clamps.add();
        side.clamped = 1;
    }
    // The clamp that drops only for a peer that has closed its window: one that still reads,
    // however slowly (a loaded host), would pay for the drops in retransmission timeouts. Looked
    // at once per wait (progress clears `probed`).
    if (!stuck || side.clamped == 2 || side.probed) return;
    if (!window_closed(fd)) {
        side.probed = 1;
        return;
    }
    side.rcvbuf = sockopt(feed, SOL_SOCKET, SO_RCVBUF);
    const int to_feed = clamp_bytes(feed);
    ::setsockopt(feed, SOL_SOCKET, SO_RCVBUF, &to_feed, sizeof to_feed);
    side.clamped = 2;
}

// Side s's queue emptied into a peer that no longer holds a backlog: it was slow, not stuck
// (a server that starts reading late, a loaded host), and a clamp left in place would hold the
// connection at a few segments per round trip for the rest of its life. The kernel's values
// from before the clamp come back; the kernel keeps the buffer sizes fixed from then on (a
// socket buffer once set is no longer autotuned) and caps them at net.core.wmem_max/rmem_max
// unless the process may force them (CAP_NET_ADMIN).
void TcpRelay::unclamp_buffers(Conn& c, unsigned s) noexcept {
    Side& side = c.side[s];
    // (clamped: both plain fds were there; the feeding side's may have closed since)
    const int fd = side.plain(), feed = c.side[s ^ 1].plain();
    // (a client that stopped reading with a small receive buffer holds less than a backlog in
    // flight, but its window is closed: not caught up)
    if (side.clamped == 0 || fd < 0 || peer_backlogged(fd) || window_closed(fd)) return;
    set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, side.sndbuf / 2);  // the kernel doubles it
    if (feed >= 0) {
        ::setsockopt(feed, IPPROTO_TCP, TCP_WINDOW_CLAMP, &side.window, sizeof side.window);
        if (side.clamped == 2) set_buffer(feed, SO_RCVBUFFORCE, SO_RCVBUF, side.rcvbuf / 2);
    }
    side.clamped = 0;
    stats_.unclamps.add();
}

bool TcpRelay::peer_backlogged(int fd) noexcept {
    int outq = 0;
    return fd >= 0 && ::ioctl(fd, SIOCOUTQ, &outq) == 0 && outq >= kBackloggedBytes;
}

// The kernel's tcp_collapse for a send queue: runs of fragments that pin shared pages for few
// bytes are copied into compact fragments of the relay's FragCache (up to one page each), so
// the receive pages they pinned go back to the pool once their other fragments are sent. A page
// the queue uses densely (half of it or more, in consecutive fragments) is left as it is. The
// only payload copy in fragproxy: on the stuck path, under pressure, counted.
void TcpRelay::collapse(Side& side) noexcept {
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
        if (!to) {  // the kernel's direct reclaim: the caches' idle pages go back, and again
            recv_->trim();
            compact_->trim();
            to = static_cast<std::byte*>(compact_->alloc(total));
        }
        if (!to) {  // no memory even for the copy: the queue stays as it is, and no queue is
            // cancelled for a collapse until sends have had the time to give pages back
            stats_.collapse_failures.add();
            collapse_retry_ms_ = reactor_.now_ms() + kStuckMs;
            return;
        }
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
