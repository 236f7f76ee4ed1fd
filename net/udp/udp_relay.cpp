// UDP relay (udp_relay.hpp). What each CQE result means: classify.hpp.
#include "net/udp/udp_relay.hpp"

#include <netinet/udp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "net/engine/classify.hpp"
#include "net/engine/uapi.hpp"
#include "net/policy/listen_socket.hpp"

namespace fp::net {
namespace {

constexpr std::uint16_t kUdpGroup = 1;
constexpr std::uint32_t kSendNodes = 1024;  // each holds a batch; pages in flight bound them
constexpr int kSocketBuffer = 4 << 20;      // per UDP socket, each way

// Room for bursts of large datagrams; FORCE (root) lifts the net.core.rmem_max cap.
void udp_buffers(int fd) noexcept {
    int bytes = kSocketBuffer;
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

int udp_listen_socket(const UdpListenerSettings& l) {
    const SockAddr& addr = l.listen;
    int fd = ::socket(addr.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), socket_error_context(l.name));
    udp_buffers(fd);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr.family() == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd, addr.sa(), addr.len) != 0) {
        int err = errno;
        ::close(fd);
        throw std::system_error(err, std::generic_category(),
                                "listener '" + l.name + "': udp listen on " + addr.str());
    }
    return fd;
}

}  // namespace

bool UdpRelay::Key::operator==(const Key& o) const noexcept {
    return std::memcmp(this, &o, sizeof *this) == 0;
}

std::size_t UdpRelay::KeyHash::operator()(const Key& k) const noexcept {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    auto* p = reinterpret_cast<const unsigned char*>(&k);
    for (std::size_t i = 0; i < sizeof k; ++i)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

UdpRelay::Key UdpRelay::key(unsigned listener, const SockAddr& a, bool with_port) noexcept {
    static_assert(sizeof(Key) == 22, "Key has no padding: equality is memcmp");
    Key k;
    k.listener = std::uint16_t(listener);
    k.family = std::uint8_t(a.family());
    if (a.family() == AF_INET) {
        auto* v4 = reinterpret_cast<const sockaddr_in*>(&a.ss);
        std::memcpy(k.addr, &v4->sin_addr, 4);
        k.port = with_port ? v4->sin_port : 0;
    } else {
        auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a.ss);
        std::memcpy(k.addr, &v6->sin6_addr, 16);
        k.port = with_port ? v6->sin6_port : 0;
    }
    return k;
}

UdpRelay::UdpRelay(Reactor& reactor, const WorkerSettings& settings, unsigned worker_index,
                   UdpStats& stats, AccessQueue* log)
    : reactor_(reactor), index_(worker_index), stats_(stats), log_(log), gso_(settings.udp_gso) {
    pool_ = std::make_unique<PagePool>(settings.udp_memory);
    recv_ = std::make_unique<RecvPages>(reactor_.ring(), *pool_, settings.udp_recv_buffers,
                                        kUdpGroup, RecvMode::kWholePages);
    nodes_ = std::make_unique<SendNode[]>(kSendNodes);
    for (std::uint32_t i = kSendNodes; i-- > 0;) {
        nodes_[i].next = free_nodes_;
        free_nodes_ = &nodes_[i];
    }
    reserve(settings.udp_listeners);
    for (const auto& l : settings.udp_listeners)
        add_listener(l, worker_index);
}

void UdpRelay::start() noexcept {
    started_ = true;
    for (unsigned i = 0; i < listeners_.size(); ++i)
        arm_listener(i);
}

UdpRelay::~UdpRelay() = default;

// Room for every session the listeners allow and those still open from before (only grows).
void UdpRelay::reserve(const std::vector<UdpListenerSettings>& listeners) {
    std::size_t max_sessions = sessions_.live();
    for (const auto& l : listeners)
        max_sessions += l.max_sessions;
    sessions_.reserve(max_sessions);
    const std::size_t n = sessions_.capacity();
    by_client_.reserve(n);
    per_source_.reserve(n);
    dirty_.reserve(n);
    starved_.reserve(n);
}

void UdpRelay::add_listener(const UdpListenerSettings& cfg, unsigned worker_index) {
    if (listeners_.size() > UINT16_MAX)  // Session::listener, Key::listener
        throw std::system_error(EMFILE, std::generic_category(),
                                "listener '" + cfg.name + "': too many listeners since start");
    Fd fd(udp_listen_socket(cfg));
    Listener& l = listeners_.emplace_back();
    l.cfg = std::make_shared<const UdpListenerSettings>(cfg);
    l.fd = std::move(fd);
    l.msg.msg_namelen = sizeof(sockaddr_in6);
    l.balancer.reset(cfg.upstreams.size(), worker_index + 1);
    if (started_) arm_listener(unsigned(listeners_.size() - 1));
}

std::string UdpRelay::reconfigure(const std::vector<UdpListenerSettings>& next) noexcept {
    std::string errors;
    try {
        reserve(next);
    } catch (const std::exception& e) {
        return std::string("udp: ") + e.what();
    }
    std::vector<bool> kept(listeners_.size(), false);
    for (const UdpListenerSettings& cfg : next) {
        unsigned i = 0;
        for (; i < listeners_.size(); ++i) {
            const Listener& l = listeners_[i];
            if (!kept[i] && l.fd.get() >= 0 && l.cfg->listen == cfg.listen &&
                l.cfg->share_port == cfg.share_port)
                break;
        }
        try {
            if (i < listeners_.size()) {  // kept (or taken back while its sessions drained)
                listeners_[i].cfg = std::make_shared<const UdpListenerSettings>(cfg);
                listeners_[i].balancer.reset(cfg.upstreams.size(), index_ + 1);
                listeners_[i].removed = false;
                kept[i] = true;
            } else {
                add_listener(cfg, index_);
            }
        } catch (const std::exception& e) {
            errors += errors.empty() ? "" : "; ";
            errors += e.what();
        }
    }
    for (unsigned i = 0; i < kept.size(); ++i)
        if (!kept[i] && listeners_[i].fd.get() >= 0) listeners_[i].removed = true;
    return errors;
}

std::size_t UdpRelay::leaked_pages() noexcept {
    recv_->drain();
    return pool_->pages_in_use();
}

std::byte* UdpRelay::take(io_uring_cqe* cqe) noexcept {
    if (!(cqe->flags & IORING_CQE_F_BUFFER)) return nullptr;
    stats_.frags.add();
    return recv_->take(std::uint16_t(cqe->flags >> IORING_CQE_BUFFER_SHIFT),
                       std::uint32_t(cqe->res > 0 ? cqe->res : 0), false);
}

void UdpRelay::arm_listener(unsigned i) noexcept {
    Listener& l = listeners_[i];
    if (l.armed || stopping_ || l.fd.get() < 0) return;
    if (recv_->offered() == 0) {
        l.starved = any_starved_ = true;
        return;
    }
    io_uring_sqe* s = reactor_.submit(Op::kUdpRecv, i);
    if (!s) return;
    io_uring_prep_recvmsg_multishot(s, l.fd.get(), &l.msg, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = kUdpGroup;
    l.armed = true;
    l.starved = false;
}

void UdpRelay::on_listener(unsigned i, io_uring_cqe* cqe) noexcept {
    Listener& l = listeners_[i];
    if (Reactor::final(cqe)) l.armed = false;
    const Verdict v = classify(Op::kUdpRecv, cqe->res);
    std::byte* buf = v == Verdict::kOk ? take(cqe) : nullptr;
    if (v == Verdict::kNoBuffers) {
        l.starved = any_starved_ = true;  // the datagrams wait in the socket, nothing is lost
        stats_.buffer_waits.add();
    }
    if (buf) {
        auto* out = io_uring_recvmsg_validate(buf, cqe->res, &l.msg);
        bool ok = out && !(out->flags & MSG_TRUNC) && !stopping_;
        std::uint32_t slot =
            ok ? find_or_open(i, static_cast<const sockaddr*>(io_uring_recvmsg_name(out)),
                              socklen_t(out->namelen))
               : UINT32_MAX;
        if (slot != UINT32_MAX) {
            Session& s = sessions_[slot];
            s.last_active = reactor_.now_ms();
            s.responses = 0;
            stats_.datagrams_in.add();
            auto* payload = static_cast<std::byte*>(io_uring_recvmsg_payload(out, &l.msg));
            queue(slot, kToUpstream, buf, payload, out->payloadlen);
        } else {
            recv_->free(buf);
        }
    }
    if (!l.armed && !l.starved) arm_listener(i);
}

std::uint32_t UdpRelay::find_or_open(unsigned li, const sockaddr* from, socklen_t len) noexcept {
    SockAddr client;
    std::memcpy(&client.ss, from, std::min<std::size_t>(len, sizeof client.ss));
    client.len = len;
    auto it = by_client_.find(key(li, client, true));
    if (it != by_client_.end()) return sessions_[it->second].closing() ? UINT32_MAX : it->second;
    Listener& l = listeners_[li];
    const auto& ls = *l.cfg;
    if (ls.acl && !ls.acl->allowed(AccessAddr::of(client))) {
        stats_.denied.add();
        return UINT32_MAX;
    }
    // Every cap before anything is made for a new source: a spray of spoofed sources past a
    // cap costs a lookup each, no allocation (the per-source entry is made once admitted).
    const Key source = key(li, client, false);
    const auto counted = per_source_.find(source);
    const std::uint32_t per_source = counted == per_source_.end() ? 0 : counted->second;
    if (draining_ || l.removed || l.sessions >= ls.max_sessions ||
        per_source >= ls.max_sessions_per_source || sessions_.full()) {
        stats_.sessions_refused.add();
        return UINT32_MAX;
    }
    const Balancing& b = ls.balancing;
    const AccessAddr src = AccessAddr::of(client);
    const std::uint64_t hash = b.balance == Balance::kSourceHash
                                   ? hash_bytes({src.addr, src.family == AF_INET ? 4u : 16u})
                                   : 0;
    const std::uint16_t up_index = l.balancer.pick(
        b.balance, b.weights, b.maglev.get(), hash,
        [&](std::size_t i) { return ls.upstream_shared[i]->active(); },
        [&](std::size_t i) { return ls.upstream_shared[i]->usable(); });
    if (up_index == Balancer::kNone) {  // every upstream out: a counted drop
        stats_.dropped_no_upstream.add();
        return UINT32_MAX;
    }
    const SockAddr& up = ls.upstreams[up_index];
    int fd = ::socket(up.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, up.sa(), up.len) != 0) {  // a UDP connect sends nothing
        if (fd >= 0) ::close(fd);
        stats_.upstream_errors.add();
        return UINT32_MAX;
    }
    udp_buffers(fd);
    int mtu = 0;
    socklen_t mtu_len = sizeof mtu;
    const bool v6 = up.family() == AF_INET6;
    const bool known = v6 ? ::getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &mtu_len) == 0
                          : ::getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &mtu_len) == 0;
    ++open_fds_;
    ++per_source_[source];
    ++l.sessions;
    const std::uint32_t slot = *sessions_.open();
    Session& s = sessions_[slot];
    s.listener = std::uint16_t(li);
    s.cfg = l.cfg;
    s.upstream = up_index;
    ls.upstream_shared[up_index]->per_worker[index_].active.add();
    s.fd = fd;
    s.client = client;
    s.last_active = s.started_ms = reactor_.now_ms();
    s.up_max_seg = gso::max_segment(v6, known ? mtu : 0);
    by_client_.emplace(key(li, client, true), slot);
    stats_.sessions.add();
    ls.shared->per_worker[index_].sessions.add();
    arm_session(slot);
    return slot;
}

void UdpRelay::arm_session(std::uint32_t slot) noexcept {
    Session& s = sessions_[slot];
    if (s.state != State::kIdle) return;
    if (recv_->offered() == 0) return starve(slot);
    io_uring_sqe* q = reactor_.submit(sessions_, Op::kUdpUpRecv, slot);
    if (!q) return;
    io_uring_prep_recv_multishot(q, s.fd, nullptr, 0, 0);
    q->flags |= IOSQE_BUFFER_SELECT;
    q->buf_group = kUdpGroup;
    set_state(s, State::kArmed);
}

void UdpRelay::on_session(std::uint32_t slot, io_uring_cqe* cqe) noexcept {
    Session& s = sessions_[slot];
    if (Reactor::final(cqe) && s.state == State::kArmed) set_state(s, State::kIdle);
    const Verdict v = classify(Op::kUdpUpRecv, cqe->res);
    std::byte* buf = v == Verdict::kOk ? take(cqe) : nullptr;
    if (v == Verdict::kOk) {  // a datagram; 0 bytes is one too, and may come without a buffer
        const std::uint32_t cap = s.cfg->max_responses;
        if (s.closing() || (cap && s.responses >= cap)) {
            if (!s.closing()) stats_.dropped_responses.add();
            if (buf) recv_->free(buf);
        } else {  // the upstream's datagrams do not keep the session alive: only the client's
            ++s.responses;
            queue(slot, kToClient, buf, buf, std::uint32_t(cqe->res));
        }
    } else if (v == Verdict::kNoBuffers) {
        starve(slot);
    } else if (v == Verdict::kReset && !s.closing()) {
        stats_.upstream_errors.add();  // e.g. ICMP port unreachable: this session ends, no more
        s.end = AccessEnd::kReset;
        close_session(slot);
    }
    if (s.closing()) return finish_session(slot);
    arm_session(slot);  // (when idle: the multishot ended)
}

// Adds one datagram to the session's open batch for that direction, or starts a new batch. A
// batch takes datagrams of its first one's size; one shorter datagram may end it (GSO's rule).
void UdpRelay::queue(std::uint32_t slot, unsigned dir, std::byte* frag, const std::byte* payload,
                     std::uint32_t len) noexcept {
    Session& s = sessions_[slot];
    SendNode* n = s.open[dir];
    const std::uint32_t max_seg =
        dir == kToUpstream ? s.up_max_seg : gso::max_segment(s.client.family() == AF_INET6, 0);
    const bool batchable = gso_ && gso::batchable(len, max_seg) && !s.no_gso[dir];
    if (n && !(batchable &&
               gso::joins(len, n->count, n->seg, std::uint32_t(n->iov[n->count - 1].iov_len)))) {
        flush(n);
        n = nullptr;
    }
    if (!n) {
        n = open_node(slot, dir);
        if (!n) {
            stats_.dropped_no_buffer.add();
            if (frag) recv_->free(frag);
            return;
        }
        n->seg = std::uint16_t(batchable ? len : 0);
    }
    s.bytes[dir] += len;
    ListenerCounters& lc = s.cfg->shared->per_worker[index_];
    (dir == kToUpstream ? lc.bytes_client : lc.bytes_upstream).add(len);
    (dir == kToUpstream ? lc.datagrams_client : lc.datagrams_upstream).add();
    n->iov[n->count] = {const_cast<std::byte*>(payload), len};
    n->frag[n->count++] = frag;
    if (!batchable) return flush(n);
    if (!s.dirty) {
        s.dirty = true;
        dirty_.push_back(slot);
    }
}

UdpRelay::SendNode* UdpRelay::open_node(std::uint32_t slot, unsigned dir) noexcept {
    SendNode* n = free_nodes_;
    if (!n) return nullptr;
    free_nodes_ = n->next;
    Session& s = sessions_[slot];
    n->msg = {};
    n->count = 0;
    n->dir = std::uint8_t(dir);
    n->slot = slot;
    n->gen = s.gen;
    if (dir == kToUpstream) {
        n->fd = s.fd;
    } else {
        n->fd = listeners_[s.listener].fd.get();
        std::memcpy(&n->to, &s.client.ss, s.client.len);
        n->msg.msg_name = &n->to;
        n->msg.msg_namelen = s.client.len;
    }
    s.open[dir] = n;
    return n;
}

// Queues the batch's sendmsg. More than one datagram: UDP_SEGMENT tells the kernel where to cut.
void UdpRelay::flush(SendNode* n) noexcept {
    Session& s = sessions_[n->slot];
    if (s.open[n->dir] == n) s.open[n->dir] = nullptr;
    io_uring_sqe* q = reactor_.submit(Op::kUdpSend, std::uint32_t(n - nodes_.get()));
    if (!q) return release(n, true);
    n->msg.msg_iov = n->iov;
    n->msg.msg_iovlen = n->count;
    n->msg.msg_control = nullptr;
    n->msg.msg_controllen = 0;
    if (n->count > 1) {
        n->msg.msg_control = n->ctl;
        n->msg.msg_controllen = sizeof n->ctl;
        cmsghdr* cm = CMSG_FIRSTHDR(&n->msg);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
        std::uint16_t seg = n->seg;
        std::memcpy(CMSG_DATA(cm), &seg, sizeof seg);
    }
    io_uring_prep_sendmsg(q, n->fd, &n->msg, 0);
    stats_.sends.add();
}

void UdpRelay::flush_dirty() noexcept {
    for (std::uint32_t slot : dirty_) {
        Session& s = sessions_[slot];
        s.dirty = false;
        for (SendNode* n : s.open)
            if (n) flush(n);
    }
    dirty_.clear();
}

void UdpRelay::on_send(std::uint32_t node, int res) noexcept {
    SendNode* n = &nodes_[node];
    const Verdict v = classify(Op::kUdpSend, res);
    if (v == Verdict::kOk) {
        stats_.datagrams_out.add(n->count);
    } else if (v == Verdict::kResend && n->count > 1) {
        stats_.gso_refused.add();
        return resend_each(n);
    } else {
        stats_.upstream_errors.add();
    }
    release(n, true);
}

// The path refused a GSO batch: its datagrams go again one by one, if their session still lives.
void UdpRelay::resend_each(SendNode* n) noexcept {
    const std::uint32_t slot = n->slot;
    Session* live = sessions_.find(slot, n->gen);
    if (!live || live->closing()) return release(n, true);
    Session& s = *live;
    s.no_gso[n->dir] = true;
    // A batch opened since holds later datagrams: they go after these, one by one as well.
    SendNode* later = s.open[n->dir];
    s.open[n->dir] = nullptr;
    for (SendNode* b : {n, later}) {
        if (!b) continue;
        for (unsigned i = 0; i < b->count; ++i)
            queue(slot, b->dir, b->frag[i], static_cast<std::byte*>(b->iov[i].iov_base),
                  std::uint32_t(b->iov[i].iov_len));
        release(b, false);
    }
}

void UdpRelay::release(SendNode* n, bool free_frags) noexcept {
    if (free_frags)
        for (unsigned i = 0; i < n->count; ++i)
            if (n->frag[i]) recv_->free(n->frag[i]);
    n->count = 0;
    n->next = free_nodes_;
    free_nodes_ = n;
}

void UdpRelay::close_session(std::uint32_t slot) noexcept {
    Session& s = sessions_[slot];
    if (s.closing()) return;
    const bool armed = s.state == State::kArmed;
    set_state(s, State::kClosing);
    for (SendNode* n : s.open)
        if (n) flush(n);  // what was received goes out before the socket closes
    if (armed)
        if (io_uring_sqe* q = reactor_.submit(sessions_, Op::kUdpCancel, slot))
            io_uring_prep_cancel_fd(q, s.fd, IORING_ASYNC_CANCEL_ALL);
    finish_session(slot);
}

void UdpRelay::finish_session(std::uint32_t slot) noexcept {
    Session& s = sessions_[slot];
    if (!s.closing() || s.pending || !s.live) return;
    close_fd(s.fd);
    s.fd = -1;
    by_client_.erase(key(s.listener, s.client, true));
    --listeners_[s.listener].sessions;
    s.cfg->upstream_shared[s.upstream]->per_worker[index_].active.sub();
    if (log_) {
        AccessRecord r;
        r.udp = true;
        r.start_ms = s.started_ms;
        r.end_ms = reactor_.now_ms();
        r.bytes_to_upstream = s.bytes[kToUpstream];
        r.bytes_to_client = s.bytes[kToClient];
        r.client = AccessAddr::of(s.client);
        r.upstream = AccessAddr::of(s.cfg->upstreams[s.upstream]);
        r.end = s.end == AccessEnd::kNone ? AccessEnd::kDrained : s.end;
        r.set_listener(s.cfg->name);
        log_->push(r);
    }
    s.cfg.reset();
    auto src = per_source_.find(key(s.listener, s.client, false));
    if (src != per_source_.end() && --src->second == 0) per_source_.erase(src);
    sessions_.close(slot);
}

void UdpRelay::close_fd(int fd) noexcept {
    --open_fds_;
    reactor_.close_fd(fd);
}

void UdpRelay::handle(const Tag& t, io_uring_cqe* cqe) noexcept {
    if (t.op == Op::kUdpRecv) return on_listener(t.slot, cqe);
    if (t.op == Op::kUdpSend) return on_send(t.slot, cqe->res);
    Session* s = reactor_.complete(sessions_, t, cqe);
    if (!s) {  // cannot happen (slots wait for their last CQE), but a buffer must never leak
        if (std::byte* buf = cqe->res >= 0 ? take(cqe) : nullptr) recv_->free(buf);
        return;
    }
    if (t.op == Op::kUdpUpRecv) return on_session(t.slot, cqe);
    finish_session(t.slot);  // kUdpCancel
}

void UdpRelay::tick() noexcept {
    for (std::uint32_t slot = 0; slot < sessions_.size(); ++slot) {
        Session& s = sessions_[slot];
        if (!s.live || s.closing()) continue;
        // since(): time the worker did not run (a stopped process, a paused machine) counts
        // toward no session's timeout; datagrams that came meanwhile are still to be read.
        auto limit = std::uint64_t(s.cfg->session_timeout.count());
        if (reactor_.since(s.last_active) < limit) continue;
        stats_.sessions_expired.add();
        s.end = AccessEnd::kIdleTimeout;
        close_session(slot);
    }
    stats_.live.set(sessions_.live());
    stats_.pages_reused.set(recv_->pages_reused());
    stats_.pages_new.set(recv_->pages_new());
    for (Listener& l : listeners_)  // removed by a reload, and its last session ended
        if (l.removed && l.sessions == 0 && l.fd.get() >= 0) close_listener(l);
}

void UdpRelay::close_listener(Listener& l) noexcept {
    if (l.armed)
        if (io_uring_sqe* q = reactor_.submit(Op::kMisc)) io_uring_prep_cancel_fd(q, l.fd.get(), 0);
    reactor_.close_fd(l.fd.release());  // the cancelled receive holds its own file reference
}

void UdpRelay::after_batch() noexcept {
    flush_dirty();
    recv_->replenish();
    if (!any_starved_ || recv_->offered() == 0) return;
    any_starved_ = false;
    for (unsigned i = 0; i < listeners_.size(); ++i)
        if (listeners_[i].starved) arm_listener(i);
    // Only sessions that starved, oldest first, and no more than there are buffers on offer: a
    // re-armed receive with data waiting takes at least one, so re-arming all of them at once
    // would just see most fail with ENOBUFS again (a storm of re-arms with thousands of sessions).
    std::size_t budget = recv_->offered(), i = 0;
    for (; i < starved_.size() && budget > 0; ++i) {
        std::uint32_t slot = starved_[i];
        Session& s = sessions_[slot];
        if (!s.live || s.state != State::kStarved) continue;  // closed meanwhile (maybe reused)
        set_state(s, State::kIdle);
        arm_session(slot);
        --budget;
    }
    starved_.erase(starved_.begin(), starved_.begin() + std::ptrdiff_t(i));
    if (!starved_.empty()) any_starved_ = true;
}

// A session whose receive waits for buffers; after_batch() re-arms it when pages come back.
void UdpRelay::starve(std::uint32_t slot) noexcept {
    Session& s = sessions_[slot];
    any_starved_ = true;
    if (s.state == State::kStarved) return;
    stats_.buffer_waits.add();
    set_state(s, State::kStarved);
    starved_.push_back(slot);
}

void UdpRelay::drain() noexcept {
    draining_ = true;
}

void UdpRelay::stop() noexcept {
    stopping_ = true;
    for (Listener& l : listeners_) {
        if (!l.armed) continue;
        if (io_uring_sqe* q = reactor_.submit(Op::kMisc)) io_uring_prep_cancel_fd(q, l.fd.get(), 0);
    }
    for (std::uint32_t slot = 0; slot < sessions_.size(); ++slot)
        if (sessions_[slot].live && !sessions_[slot].closing()) {
            sessions_[slot].end = AccessEnd::kDrained;
            close_session(slot);
        }
}

}  // namespace fp::net
