#include "net/worker.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <system_error>

#include "net/uapi.hpp"

namespace fp::net {
namespace {

constexpr unsigned kRingEntries = 4096;
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

int listen_socket(const SockAddr& addr) {
    int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr.family() == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    // Accepted sockets inherit TCP_NODELAY from the listener: no setsockopt per connection.
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::bind(fd, addr.sa(), addr.len) != 0 || ::listen(fd, 4096) != 0) {
        int err = errno;
        ::close(fd);
        throw std::system_error(err, std::generic_category(), "listen on " + addr.str());
    }
    return fd;
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
    nodes_ = std::make_unique<NodePool>(kNodes);
    std::size_t max_conns = 0;
    for (const auto& l : settings_.listeners)
        max_conns += l.max_connections;
    conns_.reserve(max_conns);  // never reallocates: a Conn's msghdr is held by the kernel
    free_slots_.reserve(max_conns);
    starved_.reserve(2 * max_conns);
    for (const auto& l : settings_.listeners) {
        listen_fds_.push_back(listen_socket(l.listen));
        auto ms = l.connect_timeout.count();
        connect_ts_.push_back({ms / 1000, (ms % 1000) * 1000000});  // stable while the worker runs
    }
    rr_.assign(settings_.listeners.size(), std::uint16_t(index_));
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
        now_ms_ = coarse_now_ms();
        unsigned head = 0, seen = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(ring, head, cqe) {
            handle(cqe);
            ++seen;
        }
        io_uring_cq_advance(ring, seen);
        if (recv_->offered() < pow2_at_least(settings_.buf_ring_pages)) recv_->replenish();
        if (!starved_.empty()) rearm_starved();
        if (udp_) udp_->after_batch(now_ms_);
    }
}

void Worker::handle(io_uring_cqe* cqe) noexcept {
    Tag t = Tag::unpack(cqe->user_data);
    switch (t.op) {
        case Op::kAccept:
            return on_accept(t.slot, cqe);
        case Op::kTick:
            return on_tick();
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
        if (!stopping_) arm_accept(listener);  // EMFILE and the like end the multishot: re-arm
    }
    if (cqe->res < 0) return;
    ++open_fds_;
    if (stopping_) return close_fd(cqe->res);
    open_conn(listener, cqe->res);
}

void Worker::arm_tick() noexcept {
    io_uring_sqe* s = sqe(Op::kTick);
    if (!s) return;
    io_uring_prep_timeout(s, &tick_ts_, 0, 0);
    io_uring_sqe_set_data64(s, Tag{Op::kTick, 0, 0, 0}.pack());
    ++misc_pending_;
}

// Once a second: idle timeouts. A scan of the live connections, far off the data path.
void Worker::on_tick() noexcept {
    --misc_pending_;
    if (stopping_) return;
    if (udp_) udp_->tick(now_ms_);
    for (std::uint32_t slot = 0; slot < conns_.size(); ++slot) {
        Conn& c = conns_[slot];
        if (!c.live || c.closing) continue;
        constexpr std::uint64_t kLingerMs = 2000;
        auto idle = c.lingering
                        ? kLingerMs
                        : std::uint64_t(settings_.listeners[c.listener].idle_timeout.count());
        if (now_ms_ - c.last_active < idle) continue;
        if (!c.lingering) stats_.idle_timeouts.add();
        close_conn(c, slot, false);
    }
    arm_tick();
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
    for (std::uint32_t slot = 0; slot < conns_.size(); ++slot)
        if (conns_[slot].live) close_conn(conns_[slot], slot, false);
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
