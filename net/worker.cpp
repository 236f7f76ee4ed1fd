#include "net/worker.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <system_error>

#include "net/listen_socket.hpp"
#include "net/uapi.hpp"

namespace fp::net {
namespace {

constexpr unsigned kRingEntries = 4096;
constexpr std::uint64_t kPausedGapMs = 1500;
constexpr std::size_t kNodes = 1 << 18;  // queued fragments per worker, all connections together

std::uint64_t coarse_now_ms() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);  // vDSO: no syscall
    return std::uint64_t(ts.tv_sec) * 1000 + std::uint64_t(ts.tv_nsec) / 1000000;
}

unsigned pow2_at_least(unsigned n) {
    unsigned p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

}  // namespace

Worker::Worker(const WorkerSettings& settings, std::vector<ListenerShared>& shared, unsigned index)
    : settings_(settings), shared_(shared), index_(index) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

Worker::~Worker() {
    stop();
    ::close(wake_fd_);
}

void Worker::start() {
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &ready] { run(&ready); });
    try {
        started.get();
    } catch (...) {
        thread_.join();
        throw;
    }
}

void Worker::stop() {
    if (!thread_.joinable()) return;
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
}

void Worker::run(std::promise<void>* ready) noexcept {
    try {
        setup();
    } catch (...) {
        teardown();
        ready->set_exception(std::current_exception());
        return;
    }
    ready->set_value();
    loop();
    teardown();
}

void Worker::setup() {
    pool_ = std::make_unique<PagePool>(settings_.memory);
    ring_ = std::make_unique<Ring>(Ring::best(kRingEntries));
    if (settings_.send_zc) fixed_ = std::make_unique<FixedBuffers>(*ring_, *pool_);
    recv_ = std::make_unique<RecvPages>(*ring_, *pool_, pow2_at_least(settings_.buf_ring_pages), 0);
    compact_ = std::make_unique<FragCache>(*pool_);
    nodes_ = std::make_unique<NodePool>(kNodes);
    std::size_t max_conns = 0;
    for (const auto& l : settings_.listeners)
        max_conns += l.max_connections;
    conns_.reserve(max_conns);  // never reallocates: a Conn's msghdr is held by the kernel
    free_slots_.reserve(max_conns);
    starved_.reserve(2 * max_conns);
    fd_waiters_.reserve(2 * max_conns);  // one pass's retries are appended to the last
    for (const auto& l : settings_.listeners) {
        listen_fds_.push_back(tcp_listen_socket(l));
        auto ms = l.connect_timeout.count();
        connect_ts_.push_back({ms / 1000, (ms % 1000) * 1000000});  // stable while the worker runs
    }
    rr_.assign(settings_.listeners.size(), std::uint16_t(index_));
    accept_paused_.assign(settings_.listeners.size(), false);
    if (index_ == 0)
        std::fprintf(stderr,
                     "fragproxy: worker ring: %s; receive: provided-buffer ring of %u x %zu "
                     "KiB pages, incremental consumption, multishot recv\n",
                     ring_->features().describe().c_str(), pow2_at_least(settings_.buf_ring_pages),
                     pool_->block_bytes() >> 10);
    now_ms_ = coarse_now_ms();
    if (!settings_.udp_listeners.empty()) {
        udp_ = std::make_unique<UdpRelay>(*ring_, settings_, index_, udp_stats_);
        udp_->after_batch(now_ms_);
    }
    for (unsigned i = 0; i < listen_fds_.size(); ++i)
        arm_accept(i);
    arm_tick();
    arm_wake();
    io_uring_submit(ring_->get());
}

void Worker::loop() noexcept {
    io_uring* ring = ring_->get();
    while (!stopping_ || live_conns_ > 0 || misc_pending_ > 0 || (udp_ && !udp_->idle())) {
        int rc;
        if (udp_ && udp_->starved()) {  // UDP receives wait for buffers: look again within 1 ms
            __kernel_timespec ts{0, 1000000};
            io_uring_cqe* first = nullptr;
            rc = io_uring_submit_and_wait_timeout(ring, &first, 1, &ts, nullptr);
            if (rc == -ETIME) rc = 0;
        } else {
            rc = io_uring_submit_and_wait(ring, 1);
        }
        if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
            std::fprintf(stderr, "fragproxy: worker %u: io_uring_enter: %d\n", index_, rc);
            break;
        }
        std::uint64_t before = now_ms_;
        now_ms_ = coarse_now_ms();
        // The loop never waits much past the 1 s tick: a longer gap means the worker was not
        // running (the process stopped, the machine paused). That time counts toward no timer:
        // the completions of it may still be arriving (the kernel runs deferred completions in
        // bounded chunks), and the connections they belong to are not idle.
        if (now_ms_ - before > kPausedGapMs) resumed_ms_ = now_ms_;
        unsigned head = 0, seen = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(ring, head, cqe) {
            handle(cqe);
            ++seen;
        }
        io_uring_cq_advance(ring, seen);
        after_batch();
    }
}

// Work that follows a batch of completions: buffers back to the kernel, starved receives
// re-armed, then the timers' scan (after the batch: a completion in it proves its connection
// alive), then the memory-pressure level and, under pressure, collapse of stuck queues.
void Worker::after_batch() noexcept {
    if (recv_->offered() < pow2_at_least(settings_.buf_ring_pages)) recv_->replenish();
    if (!starved_.empty()) rearm_starved();
    if (udp_) udp_->after_batch(now_ms_);
    if (tick_due_) {
        tick_due_ = false;
        scan_timeouts();
    }
    update_pressure();
    // Stuck queues are looked for every 10 ms once memory is tight: under pressure, or with a
    // quarter of the normal zone queued or granted (else not at all: the scan visits every slot).
    constexpr std::uint64_t kStuckScanMs = 10;
    if (tight() && now_ms_ - last_stuck_scan_ms_ >= kStuckScanMs) {
        last_stuck_scan_ms_ = now_ms_;
        tend_stuck();
    }
}

void Worker::handle(io_uring_cqe* cqe) noexcept {
    Tag t = Tag::unpack(cqe->user_data);
    switch (t.op) {
        case Op::kAccept:
            return on_accept(t.slot, cqe);
        case Op::kTick:
            return on_tick();
        case Op::kAcceptResume:
            --misc_pending_;
            return on_accept_resume(t.slot);
        case Op::kWake:
            return begin_stop();
        case Op::kClose:
            --misc_pending_;
            return;
        case Op::kUdpRecv:
        case Op::kUdpUpRecv:
        case Op::kUdpSend:
        case Op::kUdpCancel:
        case Op::kUdpMisc:
            return udp_->handle(t, cqe);
        default:
            break;
    }
    Conn* c = conn(t);
    if (!c) {  // cannot happen (slots wait for their last CQE), but a buffer must never leak
        if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER))
            recv_->free(recv_->take(std::uint16_t(cqe->flags >> IORING_CQE_BUFFER_SHIFT),
                                    std::uint32_t(cqe->res), cqe->flags & uapi::kCqeBufMore));
        return;
    }
    switch (t.op) {
        case Op::kRecv:
            return on_recv(*c, t.slot, t.side, cqe);
        case Op::kSend:
            return on_send(*c, t.slot, t.side, cqe->res);
        case Op::kConnect:
            return on_connect(*c, t.slot, cqe->res);
        case Op::kSocket:
            return on_socket(*c, t.slot, cqe->res);
        case Op::kSockopt:
            return on_sockopt(*c, t.slot, cqe->res);
        case Op::kShutdown:
            --c->pending;
            return check_done(*c, t.slot);
        default:  // kLinkTimeout, kCancel: only their completion matters
            --c->pending;
            return maybe_finish(*c, t.slot);
    }
}

Worker::Conn* Worker::conn(const Tag& t) noexcept {
    if (t.slot >= conns_.size()) return nullptr;
    Conn& c = conns_[t.slot];
    return c.live && c.gen == t.gen ? &c : nullptr;
}

io_uring_sqe* Worker::sqe(Op op, std::uint32_t slot, unsigned side) noexcept {
    io_uring_sqe* s = ring_->sqe();
    if (!s) return nullptr;
    std::uint32_t gen = slot < conns_.size() ? conns_[slot].gen : 0;
    io_uring_sqe_set_data64(s, Tag{op, side, slot, gen}.pack());
    return s;
}

void Worker::arm_accept(unsigned listener) noexcept {
    io_uring_sqe* s = sqe(Op::kAccept, listener);
    if (!s) return;
    io_uring_prep_multishot_accept(s, listen_fds_[listener], nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, Tag{Op::kAccept, 0, listener, 0}.pack());
    ++misc_pending_;
}

void Worker::on_accept(unsigned listener, io_uring_cqe* cqe) noexcept {
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        --misc_pending_;
        bool fds = cqe->res == -EMFILE || cqe->res == -ENFILE;
        if (fds) out_of_fds(listener, -cqe->res);
        if (!stopping_ && !accept_paused_[listener]) arm_accept(listener);  // re-arm the multishot
    }
    if (cqe->res < 0) return;
    ++open_fds_;
    if (stopping_) return close_fd(cqe->res);
    open_conn(listener, cqe->res);
}

// No file descriptor for a new connection (the accept, or its upstream socket): stop accepting
// on that listener for 100 ms rather than accept clients only to drop them; they wait in the
// listen backlog. Counted, and logged at most once per 10 s per worker.
void Worker::out_of_fds(unsigned listener, int err) noexcept {
    stats_.fd_exhausted.add();
    if (accept_paused_[listener] || stopping_) return;
    accept_paused_[listener] = true;
    stats_.accept_pauses.add();
    if (io_uring_sqe* s = sqe(Op::kClose)) {  // ends the multishot accept (its CQE: -ECANCELED)
        io_uring_prep_cancel64(s, Tag{Op::kAccept, 0, listener, 0}.pack(), 0);
        io_uring_sqe_set_data64(s, Tag{Op::kClose, 0, 0, 0}.pack());
        ++misc_pending_;
    }
    if (io_uring_sqe* s = sqe(Op::kAcceptResume, listener)) {
        io_uring_prep_timeout(s, &accept_pause_ts_, 0, 0);
        io_uring_sqe_set_data64(s, Tag{Op::kAcceptResume, 0, listener, 0}.pack());
        ++misc_pending_;
    }
    if (fd_logged_ms_ && now_ms_ - fd_logged_ms_ < 10000) return;
    fd_logged_ms_ = now_ms_;
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    std::fprintf(stderr,
                 "fragproxy: worker %u: listener '%s': %s (RLIMIT_NOFILE %llu, %u connections "
                 "live): accepting paused 100 ms, new clients wait in the backlog\n",
                 index_, settings_.listeners[listener].name.c_str(), std::strerror(err),
                 static_cast<unsigned long long>(rl.rlim_cur), live_conns_);
}

// Accepting resumes, and the connections that found no fd for their upstream socket try again
// (they waited like clients in the backlog: nothing was dropped).
void Worker::on_accept_resume(unsigned listener) noexcept {
    accept_paused_[listener] = false;
    if (stopping_) return;
    arm_accept(listener);
    const std::size_t n = fd_waiters_.size();  // those that fail again are appended
    for (std::size_t i = 0; i < n; ++i) {
        Conn& c = conns_[fd_waiters_[i]];
        if (!c.live || c.closing || !c.fd_wait) continue;  // gone (or its slot reused) meanwhile
        c.fd_wait = false;
        connect_upstream(fd_waiters_[i]);
    }
    fd_waiters_.erase(fd_waiters_.begin(), fd_waiters_.begin() + std::ptrdiff_t(n));
}

void Worker::arm_tick() noexcept {
    io_uring_sqe* s = sqe(Op::kTick);
    if (!s) return;
    io_uring_prep_timeout(s, &tick_ts_, 0, 0);
    io_uring_sqe_set_data64(s, Tag{Op::kTick, 0, 0, 0}.pack());
    ++misc_pending_;
}

// Once a second; the scan itself waits for the end of the batch (scan_timeouts).
void Worker::on_tick() noexcept {
    --misc_pending_;
    if (stopping_) return;
    tick_due_ = true;
    arm_tick();
}

// Idle, linger and send-stall timeouts: a scan of the live connections, far off the data path.
// A send queue that made no progress toward its peer for timeouts.send_stall is reset whatever
// the idle timer says (a client reading 1 KiB/s keeps its connection active, not its queue
// moving); a connection closed with data still queued is reset too (close_conn).
void Worker::scan_timeouts() noexcept {
    if (udp_) udp_->tick(now_ms_);
    constexpr std::uint64_t kLingerMs = 2000;
    std::uint64_t queued = 0;
    for (std::uint32_t slot = 0; slot < conns_.size(); ++slot) {
        Conn& c = conns_[slot];
        if (!c.live || c.closing) continue;
        queued += c.side[0].out.bytes + c.side[1].out.bytes;
        const auto& l = settings_.listeners[c.listener];
        auto stall = std::uint64_t(l.send_stall_timeout.count());
        bool stalled = false;
        for (const Side& side : c.side)
            stalled |= !side.out.empty() && since(side.progress_ms) >= stall;
        if (stalled && !c.lingering) {
            stats_.send_stalls.add();
            close_conn(c, slot, true);
            continue;
        }
        auto idle = c.lingering ? kLingerMs : std::uint64_t(l.idle_timeout.count());
        if (since(c.last_active) < idle) continue;
        if (!c.lingering) stats_.idle_timeouts.add();
        close_conn(c, slot, false);
    }
    if (queuing_ == 0) compact_->drain();  // nothing collapsed is queued: its pages go back
    stats_.pages_in_use.set(pool_->pages_in_use());
    stats_.queued_bytes.set(queued);
    stats_.pressure_level.set(std::uint64_t(level_));
    stats_.live.set(live_conns_);
}

void Worker::arm_wake() noexcept {
    io_uring_sqe* s = sqe(Op::kWake);
    if (!s) return;
    io_uring_prep_read(s, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
    io_uring_sqe_set_data64(s, Tag{Op::kWake, 0, 0, 0}.pack());
    ++misc_pending_;
}

void Worker::begin_stop() noexcept {
    --misc_pending_;
    stopping_ = true;
    for (int fd : listen_fds_) {
        if (io_uring_sqe* s = sqe(Op::kClose)) {
            io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(s, Tag{Op::kClose, 0, 0, 0}.pack());
            ++misc_pending_;
        }
    }
    if (io_uring_sqe* s = sqe(Op::kClose)) {  // the tick: its CQE then arrives at once
        io_uring_prep_timeout_remove(s, Tag{Op::kTick, 0, 0, 0}.pack(), 0);
        io_uring_sqe_set_data64(s, Tag{Op::kClose, 0, 0, 0}.pack());
        ++misc_pending_;
    }
    // Stopping cuts every stream that has not ended: a reset, so no client takes the cut for a
    // complete transfer (a lingering close of an unserved client stays clean).
    for (std::uint32_t slot = 0; slot < conns_.size(); ++slot)
        if (conns_[slot].live) close_conn(conns_[slot], slot, !conns_[slot].lingering);
    if (udp_) udp_->stop();
}

void Worker::close_fd(int fd) noexcept {
    --open_fds_;
    io_uring_sqe* s = sqe(Op::kClose);
    if (!s) {
        ::close(fd);
        return;
    }
    io_uring_prep_close(s, fd);
    io_uring_sqe_set_data64(s, Tag{Op::kClose, 0, 0, 0}.pack());
    ++misc_pending_;
}

void Worker::teardown() noexcept {
    for (int fd : listen_fds_)
        ::close(fd);
    listen_fds_.clear();
    if (recv_) recv_->drain();
    compact_.reset();  // drains the collapse cache's pages
    if (ring_) {
        io_uring_submit(ring_->get());  // pending closes
        io_uring_cqe* cqe = nullptr;
        while (misc_pending_ > 0 && io_uring_wait_cqe(ring_->get(), &cqe) == 0) {
            --misc_pending_;
            io_uring_cqe_seen(ring_->get(), cqe);
        }
    }
    leaked_pages_ = pool_ ? pool_->pages_in_use() : 0;
    leaked_fds_ = open_fds_;
    if (udp_) {
        leaked_pages_ += udp_->leaked_pages();
        leaked_fds_ += udp_->open_fds();
    }
    udp_.reset();
    recv_.reset();
    fixed_.reset();
    ring_.reset();
    nodes_.reset();
    pool_.reset();
}

}  // namespace fp::net
