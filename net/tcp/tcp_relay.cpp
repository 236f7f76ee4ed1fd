// TcpRelay: set-up, dispatch, and the connection's life from connect to close (the state table
// is in tcp_relay.hpp). The data path is tcp_data.cpp, the memory budget tcp_pressure.cpp.
#include "net/tcp/tcp_relay.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "alloc/frag_debug.hpp"
#include "net/engine/classify.hpp"
#include "net/engine/uapi.hpp"
#include "net/policy/listen_socket.hpp"
#include "net/wire/proxy_header.hpp"

namespace fp::net {
namespace {

constexpr std::uint16_t kTcpGroup = 0;                // the receive ring's buffer group
constexpr std::size_t kNodes = std::size_t{1} << 18;  // queued fragments per worker, in total
constexpr std::uint64_t kLingerMs = 2000;  // a lingering close reads the client's rest this long
constexpr rlim_t kDirectMax = rlim_t{1} << 18;  // direct descriptors per worker, at most
constexpr linger kResetLinger{1, 0};            // SO_LINGER 0: close sends RST

void set_nodelay(int fd) noexcept {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

__kernel_timespec timespec_of(std::uint64_t ms) {
    return {static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000) * 1000000};
}

}  // namespace

TcpRelay::TcpRelay(Reactor& reactor, const WorkerSettings& settings, unsigned worker_index,
                   TcpStats& stats, AccessQueue* log)
    : reactor_(reactor),
      index_(worker_index),
      stats_(stats),
      log_(log),
      accept_pause_ts_(timespec_of(kAcceptPauseMs)) {
    pool_ = std::make_unique<PagePool>(settings.memory);
    const bool frags = settings.recv_path == RecvPath::kFragments;
    recv_ = std::make_unique<RecvPages>(reactor.ring(), *pool_, settings.buf_ring_pages, kTcpGroup,
                                        frags ? RecvMode::kFragments : RecvMode::kIncremental,
                                        settings.recv_fragment);
    compact_ = std::make_unique<FragCache>(*pool_, Depth::kMemalloc);
    preface_ = std::make_unique<FragCache>(*pool_);
    nodes_ = std::make_unique<NodePool>(kNodes);
    // Direct descriptors: a table as large as the fd table the process may have (the kernel's
    // cap for a ring), where the kernel can accept and make sockets into it and give a plain fd
    // back for the syscalls of the memory budget.
    const RingFeatures& f = reactor.features();
    if (settings.direct_descriptors && f.socket_op && f.uring_cmd && f.fd_install) {
        rlimit rl{};
        ::getrlimit(RLIMIT_NOFILE, &rl);
        const auto n = unsigned(std::min<rlim_t>(rl.rlim_cur, kDirectMax));
        direct_ = reactor.ring().register_direct(n);
        direct_files_ = direct_ ? n : 0;
    }
    send_zc_ = settings.send_zc && f.sendmsg_zc;
    bundles_ = settings.bundles && (f.kernel_features & uapi::kFeatRecvsendBundle);
    reserve(settings.listeners);
    for (const auto& l : settings.listeners)
        add_listener(l);
}

TcpRelay::~TcpRelay() = default;

void TcpRelay::start() noexcept {
    started_ = true;
    for (unsigned i = 0; i < listeners_.size(); ++i)
        arm_accept(i);
}

// Room for every connection the listeners allow, and for those still open from before (the
// table only grows; entries never move).
void TcpRelay::reserve(const std::vector<TcpListenerSettings>& listeners) {
    std::size_t max_conns = conns_.live();
    for (const auto& l : listeners)
        max_conns += l.max_connections;
    conns_.reserve(max_conns);
    starved_.reserve(2 * conns_.capacity());
    fd_waiters_.reserve(2 * conns_.capacity());  // one pass's retries are appended to the last
}

std::string TcpRelay::describe() const {
    if (recv_->mode() == RecvMode::kFragments)
        return "fragments: provided-buffer ring of " + std::to_string(recv_->entries()) + " x " +
               std::to_string(recv_->buffer_bytes() >> 10) + " KiB fragments carved from " +
               std::to_string(pool_->block_bytes() >> 10) +
               " KiB pages by the worker's FragCache, multishot recv" +
               (bundles_ ? " in bundles" : "");
    return "incremental: provided-buffer ring of " + std::to_string(recv_->entries()) + " x " +
           std::to_string(recv_->buffer_bytes() >> 10) +
           " KiB pages, incremental consumption, multishot recv" + (bundles_ ? " in bundles" : "");
}

std::size_t TcpRelay::leaked_pages() noexcept {
    recv_->drain();
    compact_->drain();
    preface_->drain();
    return pool_->pages_in_use();
}

void TcpRelay::handle(const Tag& t, io_uring_cqe* cqe) noexcept {
    switch (t.op) {
        case Op::kAccept:
            return on_accept(t.slot, cqe);
        case Op::kAcceptResume:
            return on_accept_resume(t.slot);
        default:
            break;
    }
    Conn* c = reactor_.complete(conns_, t, cqe);
    if (!c) {  // cannot happen (slots wait for their last CQE), but a buffer must never leak
        if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) drop_recv(cqe);
        return;
    }
    switch (t.op) {
        case Op::kRecv:
            return on_recv(*c, t.slot, t.side, cqe);
        case Op::kSend:
            return on_send_cqe(*c, t.slot, t.side, cqe);
        case Op::kConnect:
            return on_connect(*c, t.slot, cqe->res);
        case Op::kSocket:
            return on_socket(*c, t.slot, cqe->res);
        case Op::kSockopt:
            on_sockopt(*c, cqe->res);
            return maybe_finish(*c, t.slot);
        case Op::kShutdown:
            return check_done(*c, t.slot);
        case Op::kInstall:
            return on_install(*c, t.slot, t.side, cqe->res);
        default:  // kLinkTimeout, kCancel: only their completion matters
            return maybe_finish(*c, t.slot);
    }
}

// The upstream socket comes from the ring (IORING_OP_SOCKET) where the kernel has it, so a new
// connection makes no syscall outside io_uring submission: socket, TCP_NODELAY (a socket
// command), connect with its linked timeout.
void TcpRelay::connect_upstream(std::uint32_t slot) noexcept {
    Conn& c = conns_[slot];
    set_state(c, State::kConnecting);
    const auto& l = *c.cfg;
    c.upstream = std::uint16_t(c.upstream % l.upstreams.size());
    count_upstream(c, c.upstream);
    const SockAddr& up = l.upstreams[c.upstream];
    if (reactor_.features().socket_op) {
        io_uring_sqe* s = reactor_.submit(conns_, Op::kSocket, slot);
        if (!s) return close_conn(c, slot, AccessEnd::kNone, false);
        // (what the completion's result is; a plain fd when the table is nearly full)
        c.side[1].direct = direct_ && direct_used_ + kSocketHeadroom < direct_files_;
        if (c.side[1].direct)
            io_uring_prep_socket_direct_alloc(s, up.family(), SOCK_STREAM, 0, 0);
        else
            io_uring_prep_socket(s, up.family(), SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
        return;
    }
    int fd = ::socket(up.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    const Verdict v = classify(Op::kSocket, fd < 0 ? -errno : fd);
    if (v == Verdict::kOutOfFds) return wait_for_fd(c, slot, errno);
    if (v != Verdict::kOk) return close_conn(c, slot, AccessEnd::kNone, false);
    ++open_fds_;
    c.side[1].fd = fd;
    c.side[1].direct = false;
    set_nodelay(fd);
    if (c.cfg->keepalive.upstream) set_keepalive(fd, c.cfg->keepalive, true);
    start_connect(c, slot, fd);
}

void TcpRelay::on_socket(Conn& c, std::uint32_t slot, int res) noexcept {
    if (res >= 0) {
        ++open_fds_;
        c.side[1].fd = res;
        if (c.side[1].direct) {
            ++direct_used_;
            stats_.direct_sides.add();
        }
    }
    if (c.state == State::kClosing) return maybe_finish(c, slot);
    const Verdict v = classify(Op::kSocket, res);
    if (v == Verdict::kOutOfFds) return wait_for_fd(c, slot, -res);
    if (v != Verdict::kOk) return close_conn(c, slot, AccessEnd::kNone, false);
    static constexpr int kOne = 1;
    io_uring_sqe* q = sockopt_cmd_ ? reactor_.submit(conns_, Op::kSockopt, slot) : nullptr;
    if (q) {
        uapi::prep_setsockopt(q, res, IPPROTO_TCP, TCP_NODELAY, &kOne);
        use(q, c.side[1]);
    } else if (!c.side[1].direct) {  // (direct descriptors: only where socket commands are)
        set_nodelay(res);
    }
    if (c.cfg->keepalive.upstream) upstream_keepalive(c, slot, res);
    start_connect(c, slot, res);
}

// No fd for the upstream socket: the client waits (accepting pauses) and the socket is tried
// again when accepting resumes, rather than accepting a client only to drop it.
void TcpRelay::wait_for_fd(Conn& c, std::uint32_t slot, int err) noexcept {
    out_of_fds(c.listener, err);
    set_state(c, State::kFdWait);
    fd_waiters_.push_back({slot, c.gen, 0});
}

void TcpRelay::on_sockopt(Conn& c, int res) noexcept {
    if (res < 0 && res != -ECANCELED) stats_.sockopt_failures.add();
    if (classify(Op::kSockopt, res) == Verdict::kUnsupported && c.side[1].fd >= 0 &&
        !c.side[1].direct) {
        sockopt_cmd_ = false;  // a kernel before 6.7: plain setsockopt from now on
        set_nodelay(c.side[1].fd);
        if (c.cfg->keepalive.upstream) set_keepalive(c.side[1].fd, c.cfg->keepalive, true);
    }
}

// tcp_keepalive on the upstream side: four socket commands through the ring (the values live in
// the connection's settings until they complete), or setsockopt where the kernel has none.
void TcpRelay::upstream_keepalive(Conn& c, std::uint32_t slot, int fd) noexcept {
    static constexpr int kOne = 1;
    const Keepalive& k = c.cfg->keepalive;
    if (!sockopt_cmd_) return set_keepalive(fd, k, true);
    const struct {
        int level, name;
        const int* value;
    } opts[] = {{SOL_SOCKET, SO_KEEPALIVE, &kOne},
                {IPPROTO_TCP, TCP_KEEPIDLE, &k.idle_s},
                {IPPROTO_TCP, TCP_KEEPINTVL, &k.interval_s},
                {IPPROTO_TCP, TCP_KEEPCNT, &k.count}};
    for (const auto& o : opts) {
        io_uring_sqe* q = reactor_.submit(conns_, Op::kSockopt, slot);
        if (!q) return c.side[1].direct ? void() : set_keepalive(fd, k, true);
        uapi::prep_setsockopt(q, fd, o.level, o.name, o.value);
        use(q, c.side[1]);
    }
}

void TcpRelay::start_connect(Conn& c, std::uint32_t slot, int fd) noexcept {
    const auto& l = *c.cfg;
    const SockAddr& up = l.upstreams[c.upstream % l.upstreams.size()];
    reactor_.reserve(2);  // the connect and its timeout go in as one linked pair
    io_uring_sqe* s = reactor_.submit(conns_, Op::kConnect, slot);
    io_uring_sqe* t = s ? reactor_.submit(conns_, Op::kLinkTimeout, slot) : nullptr;
    if (!t) {
        if (s) io_uring_prep_nop(s);  // counted already: its completion finds the close
        return close_conn(c, slot, AccessEnd::kNone, false);
    }
    io_uring_prep_connect(s, fd, up.sa(), up.len);
    use(s, c.side[1]);
    s->flags |= IOSQE_IO_LINK;
    c.connect_ts = timespec_of(std::uint64_t(l.connect_timeout.count()));
    io_uring_prep_link_timeout(t, &c.connect_ts, 0);
}

void TcpRelay::on_connect(Conn& c, std::uint32_t slot, int res) noexcept {
    if (c.state == State::kClosing) return maybe_finish(c, slot);
    UpstreamCounters& up =
        c.cfg->upstream_shared[c.upstream % c.cfg->upstreams.size()]->per_worker[index_];
    UpstreamShared& health = *c.cfg->upstream_shared[c.upstream % c.cfg->upstreams.size()];
    if (classify(Op::kConnect, res) == Verdict::kOk) {
        up.connects.add();
        health.connect_ok();
        set_state(c, State::kRelaying);
        c.end = AccessEnd::kNone;  // an earlier upstream's failure is not how it ends
        c.last_active = reactor_.now_ms();
        if (c.cfg->send_proxy && !queue_proxy_header(c))
            return close_conn(c, slot, AccessEnd::kNone, true);
        arm_recv(c, slot, 0);  // (already armed after a PROXY header: its bytes wait queued)
        arm_recv(c, slot, 1);
        kick_send(c, slot, 1);  // the PROXY header, if any, and what the client sent meanwhile
        if (c.side[0].recv == Recv::kEof) {  // the client's FIN came while connecting
            set_state(c, State::kHalfClosed);
            if (c.side[1].out.empty()) shutdown_side(c, slot, 1);
        }
        return;
    }
    stats_.upstream_failures.add();
    up.connect_failures.add();
    health.connect_failed();  // with a health check: fall in a row take it out
    if (res == -ECANCELED) stats_.connect_timeouts.add();  // its linked timeout fired
    c.end = AccessEnd::kConnectFailure;                    // unless another upstream answers
    close_side(c.side[1]);
    std::size_t first = 0, n = c.cfg->upstreams.size();  // its route's upstreams, or all
    if (c.route >= 0) {
        const Route& r = c.cfg->routing.routes[std::size_t(c.route)];
        first = r.first;
        n = r.count;
    }
    while (++c.attempts < n) {  // the next upstream that is not out
        c.upstream = std::uint16_t(first + (c.upstream - first + 1) % n);
        if (!c.cfg->upstream_shared[c.upstream]->usable()) continue;
        stats_.retries.add();
        return connect_upstream(slot);
    }
    linger_close(c, slot);
}

// send_proxy: the PROXY header goes first on the upstream side, in a fragment of the worker's
// preface cache, sent and freed like the bytes that follow it: ahead of what the client sent
// while the upstream connected (its receive is armed at the accept on such listeners), with the
// accepted header's TLVs that pass_tlvs keeps (freed here) and a CRC32C if asked.
bool TcpRelay::queue_proxy_header(Conn& c) noexcept {
    const TcpListenerSettings& cfg = *c.cfg;
    const std::size_t room = kProxyHeaderMax + c.tlv_len + (cfg.proxy_crc32c ? kCrcTlv : 0);
    auto* frag = static_cast<std::byte*>(preface_->alloc(room));
    FragNode* node = frag ? nodes_->get() : nullptr;
    if (!node) {
        if (frag) preface_->free(frag);
        return false;
    }
    const std::size_t n = write_proxy_header(frag, cfg.send_proxy, c.client, c.local,
                                             {c.tlvs, c.tlv_len}, cfg.proxy_crc32c);
    if (c.tlvs) preface_->free(std::exchange(c.tlvs, nullptr));
    queue_fragment(c.side[1], frag, std::uint32_t(n), node, true);  // ahead of the client's
    return true;
}

// A clean close of a client whose request cannot be served: closing a socket with unread data
// makes the kernel send RST, so send FIN first and read (and drop) what the client still sends
// until its FIN, kLingerMs (tick), or an error; then close.
void TcpRelay::linger_close(Conn& c, std::uint32_t slot) noexcept {
    drain_queue(c.side[1].out);  // read while connecting (send_proxy, a PROXY header, routes)
    set_state(c, State::kLingering);
    c.last_active = reactor_.now_ms();
    shutdown_side(c, slot, 0);
    arm_recv(c, slot, 0);
}

void TcpRelay::shutdown_side(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (side.send != Send::kIdle || side.fd < 0 || c.state == State::kClosing || before_upstream(c))
        return;
    // The connection's last FIN: both peers have sent theirs (nothing unread: the close sends a
    // FIN, not a reset, after what the socket still holds) and the other side is shut. The close
    // passes it on: io_uring hands every shutdown to an io-wq thread (a wakeup, two context
    // switches and the ring's lock, a fifth of fragproxy's CPU with short connections).
    const Side& other = c.side[s ^ 1];
    if (c.state != State::kLingering && side.recv == Recv::kEof && other.recv == Recv::kEof &&
        other.send == Send::kShut) {
        side.send = Send::kShut;
        stats_.fin_by_close.add();
        return close_conn(c, slot, AccessEnd::kNone, false);
    }
    io_uring_sqe* q = reactor_.submit(conns_, Op::kShutdown, slot, s);
    if (!q) return close_conn(c, slot, AccessEnd::kNone, true);
    io_uring_prep_shutdown(q, side.fd, SHUT_WR);
    use(q, side);
    side.send = Send::kShut;
}

// Both directions finished: each side sent FIN and we passed it on.
void TcpRelay::check_done(Conn& c, std::uint32_t slot) noexcept {
    if (c.state == State::kClosing) return maybe_finish(c, slot);
    const Side& a = c.side[0];
    const Side& b = c.side[1];
    if (a.recv == Recv::kEof && b.recv == Recv::kEof && a.send == Send::kShut &&
        b.send == Send::kShut)
        close_conn(c, slot, AccessEnd::kNone, false);
}

void TcpRelay::close_conn(Conn& c, std::uint32_t slot, AccessEnd why, bool reset) noexcept {
    if (c.state == State::kClosing) return;
    const bool connecting =
        c.state == State::kAccepted || c.state == State::kConnecting || c.state == State::kFdWait;
    set_state(c, State::kClosing);
    if (why != AccessEnd::kNone) c.end = why;
    if (!c.side[0].out.empty() || !c.side[1].out.empty()) {  // data would be lost: never a FIN
        stats_.cut.add();
        reset = true;
    }
    if (reset) stats_.resets.add();
    const bool by_fin = c.end == AccessEnd::kClientClose || c.end == AccessEnd::kUpstreamClose;
    if (reset && (c.end == AccessEnd::kNone || by_fin))
        c.end = AccessEnd::kReset;
    else if (c.end == AccessEnd::kNone)
        c.end = connecting ? AccessEnd::kConnectFailure : AccessEnd::kClientClose;
    for (unsigned k = 0; k < 2; ++k) {
        Side& side = c.side[k];
        if (side.fd < 0) continue;
        if (reset && !side.direct) {  // SO_LINGER 0: the close sends RST, so the peer learns of it
            ::setsockopt(side.fd, SOL_SOCKET, SO_LINGER, &kResetLinger, sizeof kResetLinger);
        } else if (reset) {  // (a socket command, before the close that waits for this CQE)
            if (io_uring_sqe* q = reactor_.submit(conns_, Op::kSockopt, slot)) {
                uapi::prep_setsockopt(q, side.fd, SOL_SOCKET, SO_LINGER, &kResetLinger);
                use(q, side);
            }
        }
        // A cancel by fd walks the ring's whole poll table and io-wq (3% of the CPU with short
        // connections): only for a side with a receive, send or connect in flight. (A shutdown
        // in flight completes by itself, and the close waits for it.)
        const bool armed = side.recv == Recv::kArmed || side.recv == Recv::kPausing;
        const bool sending = side.send == Send::kSending || side.send == Send::kCollapsing;
        if (!armed && !sending && !(connecting && k == 1)) continue;
        stats_.close_cancels.add();
        if (io_uring_sqe* q = reactor_.submit(conns_, Op::kCancel, slot))
            io_uring_prep_cancel_fd(
                q, side.fd,
                IORING_ASYNC_CANCEL_ALL | (side.direct ? IORING_ASYNC_CANCEL_FD_FIXED : 0));
    }
    maybe_finish(c, slot);
}

void TcpRelay::maybe_finish(Conn& c, std::uint32_t slot) noexcept {
    // (!live: finished already, by the close_conn of a handler that goes on with c)
    if (c.state != State::kClosing || c.pending > 0 || !c.live) return;
    for (Side& side : c.side) {
        drain_queue(side.out);
        close_side(side);
    }
    if (c.tlvs) preface_->free(std::exchange(c.tlvs, nullptr));  // never connected
    c.cfg->shared->connections.fetch_sub(1, std::memory_order_relaxed);
    count_upstream(c, -1);
    if (c.source_counted) c.cfg->shared->sources->release(c.client);
    if (log_) log_access(c);
    stats_.closed_by[std::size_t(c.end)].add();
    c.cfg.reset();  // the settings of an earlier reload go once their last connection has
    conns_.close(slot);
    stats_.closed.add();
}

// A closing connection's queued fragments: one release per run of fragments on the same page
// (by descriptor, not by address arithmetic: a collapse copy may sit on an order-0 page).
void TcpRelay::drain_queue(FragQueue& q) noexcept {
    if (!q.empty()) --queuing_;
    queued_ -= q.bytes;
    while (!q.empty()) {
        FragNode* first = q.pop();
        std::byte* page_start = first->frag;
        const Page* page = pool_->page_of(page_start);
        std::uint32_t run = 1;
        frag_debug::untrack(first->frag);
        nodes_->put(first);
        while (!q.empty() && pool_->page_of(q.head->frag) == page) {
            FragNode* n = q.pop();
            frag_debug::untrack(n->frag);
            nodes_->put(n);
            ++run;
        }
        recv_->free_run(page_start, run);
        stats_.page_drains.add();
    }
    q.bytes = 0;
}

void TcpRelay::close_fd(int fd, bool direct) noexcept {
    --open_fds_;
    if (direct) --direct_used_;
    reactor_.close_fd(fd, direct);
}

void TcpRelay::close_side(Side& side) noexcept {
    if (side.fd >= 0) close_fd(side.fd, side.direct);
    if (side.sys >= 0) close_fd(side.sys);
    side.fd = side.sys = -1;
    side.direct = side.installing = false;
}

int TcpRelay::sys_fd(Conn& c, std::uint32_t slot, unsigned s) noexcept {
    Side& side = c.side[s];
    if (side.plain() >= 0 || !side.direct) return side.plain();
    if (side.fd < 0 || side.installing || c.state == State::kClosing) return -1;
    if (s == 1 && before_upstream(c)) return -1;  // (its socket may fail and be replaced)
    if (io_uring_sqe* q = reactor_.submit(conns_, Op::kInstall, slot, s)) {
        uapi::prep_fixed_fd_install(q, side.fd);
        side.installing = true;
    }
    return -1;
}

void TcpRelay::on_install(Conn& c, std::uint32_t slot, unsigned s, int res) noexcept {
    Side& side = c.side[s];
    side.installing = false;
    if (res >= 0) {
        ++open_fds_;
        stats_.fd_installs.add();
        side.sys = res;  // (closed with the side, whatever its state)
    }
    if (c.state == State::kClosing) return maybe_finish(c, slot);
    if (c.side[0].installing || c.side[1].installing) return;
    for (unsigned k = 0; k < 2; ++k)  // the clamp that waited for these fds
        if (c.side[k].recv == Recv::kPaused) clamp_behind(c, slot, k);
}

// The connection's record for the access log, as it ends (its slot is about to be freed).
void TcpRelay::log_access(const Conn& c) noexcept {
    AccessRecord r;
    r.start_ms = c.started_ms;
    r.end_ms = reactor_.now_ms();
    r.bytes_to_upstream = c.bytes[0];
    r.bytes_to_client = c.bytes[1];
    r.client = c.client;
    r.upstream = AccessAddr::of(c.cfg->upstreams[c.upstream % c.cfg->upstreams.size()]);
    r.end = c.end;
    r.set_listener(c.cfg->name);
    log_->push(r);
}

// Idle, linger and send-stall timeouts: a scan of the live connections, far off the data path.
// A send queue that made no progress toward its peer for timeouts.send_stall is reset whatever
// the idle timer says (a client reading 1 KiB/s keeps its connection active, not its queue
// moving); a connection closed with data still queued is reset too (close_conn).
void TcpRelay::tick() noexcept {
    std::uint64_t queued = 0;
    for (std::uint32_t slot = 0; slot < conns_.size(); ++slot) {
        Conn& c = conns_[slot];
        if (!c.live || c.state == State::kClosing) continue;
        queued += c.side[0].out.bytes + c.side[1].out.bytes;
        const auto& l = *c.cfg;
        if (c.state == State::kProxyHeader &&
            reactor_.since(c.started_ms) >= std::uint64_t(l.accept_proxy.timeout.count())) {
            l.shared->per_worker[index_].proxy_timeout.add();
            close_conn(c, slot, AccessEnd::kRejected, true);
            continue;
        }
        if (c.state == State::kClientHello &&
            reactor_.since(c.started_ms) >= std::uint64_t(l.routing.timeout.count())) {
            hello_timed_out(c, slot);
            continue;
        }
        const bool lingering = c.state == State::kLingering;
        const auto stall = std::uint64_t(l.send_stall_timeout.count());
        bool stalled = false;
        for (const Side& side : c.side)
            stalled |= !side.out.empty() && reactor_.since(side.progress_ms) >= stall;
        if (stalled && !lingering) {
            stats_.send_stalls.add();
            close_conn(c, slot, AccessEnd::kSendStall, true);
            continue;
        }
        const auto idle = lingering ? kLingerMs : std::uint64_t(l.idle_timeout.count());
        if (reactor_.since(c.last_active) < idle) continue;
        if (!lingering) stats_.idle_timeouts.add();
        close_conn(c, slot, lingering ? AccessEnd::kNone : AccessEnd::kIdleTimeout, false);
    }
    if (queuing_ == 0) {  // nothing collapsed (or a header) is queued: their pages go back
        compact_->drain();
        preface_->drain();
    }
    if (direct_) rearm_accepts();  // direct accepts again once the table has room
    recv_->trim();                 // the caches' idle pages go back once a second
    compact_->trim();
    preface_->trim();
    stats_.pages_in_use.set(pool_->pages_in_use());
    stats_.pages_reused.set(recv_->pages_reused());
    stats_.pages_new.set(recv_->pages_new());
    stats_.queued_bytes.set(queued);
    stats_.pressure_level.set(std::uint64_t(level_));
    stats_.live.set(conns_.live());
}

// The listening sockets close at once (the kernel refuses new connections; clients still in the
// backlog are reset), accepting ends; established connections go on until they end.
void TcpRelay::drain() noexcept {
    stopping_ = true;
    for (Listener& l : listeners_)
        close_listener(l);
}

// Stopping cuts every stream that has not ended: a reset, so no client takes the cut for a
// complete transfer (a lingering close of an unserved client stays clean).
void TcpRelay::stop() noexcept {
    drain();
    for (std::uint32_t slot = 0; slot < conns_.size(); ++slot) {
        Conn& c = conns_[slot];
        if (!c.live || c.state == State::kClosing) continue;
        const bool lingering = c.state == State::kLingering;
        close_conn(c, slot, lingering ? AccessEnd::kNone : AccessEnd::kDrained, !lingering);
    }
}

}  // namespace fp::net
