#include "net/engine/epoll_ring.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "alloc/poison.hpp"
#include "net/engine/buf_rings.hpp"
#include "net/engine/handler_pool.hpp"
#include "net/engine/uapi.hpp"

namespace fp::net {
namespace {

constexpr unsigned kBurst = 16;       // receives or accepts per turn before others get theirs
constexpr unsigned kPollBatch = 256;  // ready handlers run per wait, at most

using Clock = std::chrono::steady_clock;

std::chrono::nanoseconds duration_of(const __kernel_timespec* ts) {
    return std::chrono::seconds(ts->tv_sec) + std::chrono::nanoseconds(ts->tv_nsec);
}

}  // namespace

struct EpollRing::Impl {
    // An SQE being carried out: waiting for readiness, a timer, or a turn (a burst's rest).
    struct Op {
        io_uring_sqe sqe{};
        std::uint32_t gen = 0;
        bool live = false;
        bool connecting = false;                    // CONNECT: in progress, its result is SO_ERROR
        std::uint64_t taken = 0;                    // RECV with a total cap: bytes so far
        std::int32_t link = -1;                     // its LINK_TIMEOUT
        std::int32_t owner = -1;                    // a LINK_TIMEOUT's op
        std::unique_ptr<asio::steady_timer> timer;  // TIMEOUT, LINK_TIMEOUT (kept for reuse)
    };
    struct FdState {
        std::unique_ptr<asio::posix::stream_descriptor> desc;  // registered at the first wait
        std::vector<std::uint32_t> ops;                        // live ops on this fd
        bool nonblock = false;
    };
    explicit Impl(unsigned entries) : sq(entries) {}

    // First: destroyed last, after every descriptor, timer and the io_context have destroyed
    // the handlers they still held.
    HandlerPool handlers;
    asio::io_context io{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::vector<io_uring_sqe> sq;
    unsigned sq_n = 0;
    std::vector<io_uring_cqe> cq, batch;
    std::vector<std::unique_ptr<Op>> ops;
    std::vector<std::uint32_t> free_ops;
    std::vector<FdState> fds;
    BufRings groups;

    // h with its memory from the handler pool: no heap allocation per wait, timer or turn.
    template <class Handler>
    auto pooled(Handler h) {
        return asio::bind_allocator(PoolAllocator<void>(&handlers), std::move(h));
    }
    void post(std::uint64_t user_data, int res, unsigned flags = 0) {
        cq.push_back(io_uring_cqe{user_data, res, flags});
    }
    FdState& fd_state(int fd) {
        if (std::size_t(fd) >= fds.size()) fds.resize(std::size_t(fd) + 1);
        return fds[std::size_t(fd)];
    }
    // A new fd (accepted, or a socket made): whatever was known of an earlier fd of that number
    // (closed outside the ring) goes.
    void fresh_fd(int fd) {
        FdState& f = fd_state(fd);
        if (f.desc) {
            f.desc->release();
            f.desc.reset();
        }
        f.nonblock = true;
    }
    void make_nonblocking(int fd) {
        FdState& f = fd_state(fd);
        if (f.nonblock) return;
        const int fl = ::fcntl(fd, F_GETFL);
        if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        f.nonblock = true;
    }

    std::uint32_t open_op(const io_uring_sqe& s) {
        std::uint32_t i;
        if (!free_ops.empty()) {
            i = free_ops.back();
            free_ops.pop_back();
        } else {
            i = std::uint32_t(ops.size());
            ops.push_back(std::make_unique<Op>());
        }
        Op& o = *ops[i];
        o.sqe = s;
        ++o.gen;
        o.live = true;
        o.connecting = false;
        o.taken = 0;
        o.link = o.owner = -1;
        if (uses_fd(s.opcode)) fd_state(s.fd).ops.push_back(i);
        return i;
    }
    static bool uses_fd(std::uint8_t opcode) {
        switch (opcode) {
            case IORING_OP_ACCEPT:
            case IORING_OP_RECV:
            case IORING_OP_RECVMSG:
            case IORING_OP_SENDMSG:
            case IORING_OP_CONNECT:
            case IORING_OP_READ:
                return true;
            default:
                return false;
        }
    }
    // The op's last CQE: posted, the op freed, its link timeout (if any) cancelled.
    void finish(std::uint32_t i, int res, unsigned flags = 0) {
        Op& o = *ops[i];
        if (!o.live) return;
        o.live = false;
        post(o.sqe.user_data, res, flags & ~IORING_CQE_F_MORE);
        if (uses_fd(o.sqe.opcode)) {
            auto& v = fd_state(o.sqe.fd).ops;
            for (std::size_t k = 0; k < v.size(); ++k)
                if (v[k] == i) {
                    v[k] = v.back();
                    v.pop_back();
                    break;
                }
        }
        if (o.timer) o.timer->cancel();
        if (o.link >= 0) finish(std::uint32_t(o.link), -ECANCELED);
        if (o.owner >= 0) ops[std::size_t(o.owner)]->link = -1;
        free_ops.push_back(i);
    }

    // Readiness: the op runs again once its fd is readable (or writable).
    void wait(std::uint32_t i, bool write) {
        const int fd = ops[i]->sqe.fd;
        FdState& f = fd_state(fd);
        if (!f.desc) {
            asio::error_code ec;
            f.desc = std::make_unique<asio::posix::stream_descriptor>(io);
            f.desc->assign(fd, ec);
            if (ec) {
                f.desc.reset();
                return finish(i, -ec.value());
            }
        }
        const std::uint32_t gen = ops[i]->gen;
        f.desc->async_wait(write ? asio::posix::descriptor_base::wait_write
                                 : asio::posix::descriptor_base::wait_read,
                           pooled([this, i, gen](const asio::error_code& ec) {
                               Op& o = *ops[i];
                               if (!o.live || o.gen != gen) return;  // cancelled meanwhile
                               if (ec == asio::error::operation_aborted)
                                   return finish(i, -ECANCELED);  // its fd closed under it
                               run(i);
                           }));
    }
    // A turn later (a burst's rest: the fd is still ready, but others come first).
    void later(std::uint32_t i) {
        const std::uint32_t gen = ops[i]->gen;
        asio::post(io, pooled([this, i, gen] {
                       if (ops[i]->live && ops[i]->gen == gen) run(i);
                   }));
    }

    void run(std::uint32_t i) {
        switch (ops[i]->sqe.opcode) {
            case IORING_OP_ACCEPT:
                return accept(i);
            case IORING_OP_RECV:
                return recv(i);
            case IORING_OP_RECVMSG:
                return recvmsg(i);
            case IORING_OP_SENDMSG:
                return sendmsg(i);
            case IORING_OP_CONNECT:
                return connect(i);
            case IORING_OP_READ:
                return read(i);
            default:
                return finish(i, -EINVAL);
        }
    }

    void accept(std::uint32_t i) {
        const io_uring_sqe& s = ops[i]->sqe;
        const bool multishot = s.ioprio & IORING_ACCEPT_MULTISHOT;
        make_nonblocking(s.fd);
        for (unsigned n = 0; n < kBurst; ++n) {
            const int fd = ::accept4(s.fd, reinterpret_cast<sockaddr*>(s.addr),
                                     reinterpret_cast<socklen_t*>(s.addr2),
                                     int(s.accept_flags) | SOCK_NONBLOCK);
            if (fd < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) return wait(i, false);
                if (errno == EINTR || errno == ECONNABORTED) continue;
                return finish(i, -errno);
            }
            fresh_fd(fd);
            if (!multishot) return finish(i, fd);
            post(s.user_data, fd, IORING_CQE_F_MORE);
        }
        later(i);
    }

    void recv(std::uint32_t i) {
        Op& o = *ops[i];
        const io_uring_sqe& s = o.sqe;
        const bool multishot = s.ioprio & IORING_RECV_MULTISHOT;
        const bool select = s.flags & IOSQE_BUFFER_SELECT;
        const std::uint32_t total = s.file_index;  // uapi::prep_recv_multishot_capped
        for (unsigned n = 0; n < kBurst; ++n) {
            io_uring_buf* b = select ? groups.next(s.buf_group) : nullptr;
            if (select && !b) return finish(i, -ENOBUFS);
            void* at = select ? reinterpret_cast<void*>(b->addr) : reinterpret_cast<void*>(s.addr);
            std::size_t len = select ? b->len : s.len;
            if (select && s.len && s.len < len) len = s.len;
            if (total && total - o.taken < len) len = std::size_t(total - o.taken);
            // A provided buffer may be poisoned while lent (the kernel's to write, unseen by
            // ASan, which sees this write): it is left as it was; the relay's take unpoisons.
            const bool lent = select && poisoned(at);
            if (lent) unpoison(at, len);
            const ssize_t got = ::recv(s.fd, at, len, int(s.msg_flags) | MSG_DONTWAIT);
            const int err = errno;
            if (lent) poison(at, len);
            if (got < 0) {
                if (err == EAGAIN || err == EWOULDBLOCK) return wait(i, false);
                if (err == EINTR) continue;
                return finish(i, -err);
            }
            if (got == 0) return finish(i, 0);  // EOF: no buffer used
            unsigned flags = 0;
            if (select) {
                flags = IORING_CQE_F_BUFFER | unsigned(b->bid) << IORING_CQE_BUFFER_SHIFT;
                groups.consume(s.buf_group);
            }
            o.taken += std::uint64_t(got);
            if (!multishot || (total && o.taken >= total)) return finish(i, int(got), flags);
            post(s.user_data, int(got), flags | IORING_CQE_F_MORE);
        }
        later(i);
    }

    // The kernel's layout in the buffer: io_uring_recvmsg_out, the name area (the template's
    // msg_namelen), the control area (its msg_controllen), the payload.
    void recvmsg(std::uint32_t i) {
        const io_uring_sqe& s = ops[i]->sqe;
        const bool multishot = s.ioprio & IORING_RECV_MULTISHOT;
        const auto* tmpl = reinterpret_cast<const msghdr*>(s.addr);
        if (!(s.flags & IOSQE_BUFFER_SELECT)) {  // a plain recvmsg into the caller's msghdr
            const ssize_t got =
                ::recvmsg(s.fd, reinterpret_cast<msghdr*>(s.addr), int(s.msg_flags) | MSG_DONTWAIT);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait(i, false);
            return finish(i, got < 0 ? -errno : int(got));
        }
        const std::size_t head =
            sizeof(io_uring_recvmsg_out) + tmpl->msg_namelen + tmpl->msg_controllen;
        for (unsigned n = 0; n < kBurst; ++n) {
            io_uring_buf* b = groups.next(s.buf_group);
            if (!b) return finish(i, -ENOBUFS);
            if (b->len < head) return finish(i, -EFAULT);
            auto* base = reinterpret_cast<std::byte*>(b->addr);
            msghdr m{};
            iovec iov{base + head, b->len - head};
            m.msg_name = tmpl->msg_namelen ? base + sizeof(io_uring_recvmsg_out) : nullptr;
            m.msg_namelen = tmpl->msg_namelen;
            m.msg_control = tmpl->msg_controllen
                                ? base + sizeof(io_uring_recvmsg_out) + tmpl->msg_namelen
                                : nullptr;
            m.msg_controllen = tmpl->msg_controllen;
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            const bool lent = poisoned(base);  // (as in recv)
            if (lent) unpoison(base, b->len);
            const ssize_t got = ::recvmsg(s.fd, &m, int(s.msg_flags) | MSG_DONTWAIT);
            const int err = errno;
            if (got >= 0) {
                io_uring_recvmsg_out out{};
                out.namelen = m.msg_namelen;
                out.controllen = std::uint32_t(m.msg_controllen);
                out.payloadlen = std::uint32_t(got);
                out.flags = std::uint32_t(m.msg_flags);
                std::memcpy(base, &out, sizeof out);
            }
            if (lent) poison(base, b->len);
            if (got < 0) {
                if (err == EAGAIN || err == EWOULDBLOCK) return wait(i, false);
                if (err == EINTR) continue;
                return finish(i, -err);
            }
            const unsigned flags = IORING_CQE_F_BUFFER | unsigned(b->bid)
                                                             << IORING_CQE_BUFFER_SHIFT;
            groups.consume(s.buf_group);
            const int res = int(head + std::size_t(got));
            if (!multishot) return finish(i, res, flags);
            post(s.user_data, res, flags | IORING_CQE_F_MORE);
        }
        later(i);
    }

    void sendmsg(std::uint32_t i) {
        const io_uring_sqe& s = ops[i]->sqe;
        const ssize_t sent = ::sendmsg(s.fd, reinterpret_cast<const msghdr*>(s.addr),
                                       int(s.msg_flags) | MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait(i, true);
        if (sent < 0 && errno == EINTR) return later(i);
        finish(i, sent < 0 ? -errno : int(sent));
    }

    void connect(std::uint32_t i) {
        Op& o = *ops[i];
        const io_uring_sqe& s = o.sqe;
        if (o.connecting) {  // writable: the connect is done, its result in SO_ERROR
            int err = 0;
            socklen_t len = sizeof err;
            if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
            return finish(i, -err);
        }
        make_nonblocking(s.fd);
        if (::connect(s.fd, reinterpret_cast<const sockaddr*>(s.addr), socklen_t(s.off)) == 0)
            return finish(i, 0);
        if (errno == EINPROGRESS || errno == EAGAIN) {
            o.connecting = true;
            return wait(i, true);
        }
        finish(i, -errno);
    }

    void read(std::uint32_t i) {
        const io_uring_sqe& s = ops[i]->sqe;
        make_nonblocking(s.fd);
        const ssize_t got = ::read(s.fd, reinterpret_cast<void*>(s.addr), s.len);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait(i, false);
        finish(i, got < 0 ? -errno : int(got));
    }

    void start_timer(std::uint32_t i, const __kernel_timespec* ts, int fired) {
        Op& o = *ops[i];
        if (!o.timer) o.timer = std::make_unique<asio::steady_timer>(io);
        o.timer->expires_after(duration_of(ts));
        const std::uint32_t gen = o.gen;
        o.timer->async_wait(pooled([this, i, gen, fired](const asio::error_code& ec) {
            Op& t = *ops[i];
            if (ec || !t.live || t.gen != gen) return;
            if (t.owner >= 0) {  // a link timeout: its op is cancelled first
                const auto owner = std::uint32_t(t.owner);
                t.owner = -1;
                ops[owner]->link = -1;
                finish(owner, -ECANCELED);
            }
            finish(i, fired);
        }));
    }

    // ASYNC_CANCEL: by user_data, by fd, or any; one or all. Each op cancelled completes with
    // -ECANCELED; the cancel itself with the count (all), 0 (one) or -ENOENT.
    int cancel(const io_uring_sqe& s) {
        const unsigned f = s.cancel_flags;
        const bool all = f & (IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY);
        int count = 0;
        if (f & IORING_ASYNC_CANCEL_FD) {
            if (std::size_t(s.fd) < fds.size()) {
                auto& v = fds[std::size_t(s.fd)].ops;
                while (!v.empty() && (all || count == 0)) {
                    finish(v.back(), -ECANCELED);
                    ++count;
                }
            }
        } else {
            for (std::uint32_t i = 0; i < ops.size() && (all || count == 0); ++i) {
                Op& o = *ops[i];
                if (!o.live || (!(f & IORING_ASYNC_CANCEL_ANY) && o.sqe.user_data != s.addr))
                    continue;
                finish(i, -ECANCELED);
                ++count;
            }
        }
        if (all) return count;
        return count ? 0 : -ENOENT;
    }

    int timeout_remove(const io_uring_sqe& s) {
        for (std::uint32_t i = 0; i < ops.size(); ++i) {
            Op& o = *ops[i];
            if (o.live && o.sqe.opcode == IORING_OP_TIMEOUT && o.sqe.user_data == s.addr) {
                finish(i, -ECANCELED);
                return 0;
            }
        }
        return -ENOENT;
    }

    // Starts one SQE; `link` is the LINK_TIMEOUT that follows it (IOSQE_IO_LINK), if any.
    void start(const io_uring_sqe& s, const io_uring_sqe* link) {
        switch (s.opcode) {
            case IORING_OP_NOP:
                return post(s.user_data, 0);
            case IORING_OP_SOCKET: {
                const int fd = ::socket(s.fd, int(s.off) | SOCK_NONBLOCK, int(s.len));
                if (fd >= 0) fresh_fd(fd);
                return post(s.user_data, fd < 0 ? -errno : fd);
            }
            case IORING_OP_SHUTDOWN:
                return post(s.user_data, ::shutdown(s.fd, int(s.len)) == 0 ? 0 : -errno);
            case IORING_OP_CLOSE:
                return post(s.user_data, close(s.fd));
            case IORING_OP_URING_CMD: {
                if (s.cmd_op != uapi::kSocketUringOpSetsockopt)
                    return post(s.user_data, -EOPNOTSUPP);
                const int rc =
                    ::setsockopt(s.fd, int(s.addr & 0xffffffffu), int(s.addr >> 32),
                                 reinterpret_cast<const void*>(s.addr3), socklen_t(s.file_index));
                return post(s.user_data, rc == 0 ? 0 : -errno);
            }
            case IORING_OP_ASYNC_CANCEL:
                return post(s.user_data, cancel(s));
            case IORING_OP_TIMEOUT_REMOVE:
                return post(s.user_data, timeout_remove(s));
            case IORING_OP_TIMEOUT: {
                const std::uint32_t i = open_op(s);
                return start_timer(i, reinterpret_cast<const __kernel_timespec*>(s.addr), -ETIME);
            }
            default:
                if (!uses_fd(s.opcode)) return post(s.user_data, -EINVAL);  // (an fd's op: below)
        }
        const std::uint32_t i = open_op(s);
        std::int32_t t = -1;
        if (link) {  // started first: the op may finish at once and cancel it
            t = std::int32_t(open_op(*link));
            ops[std::size_t(t)]->owner = std::int32_t(i);
            ops[i]->link = t;
            start_timer(std::uint32_t(t), reinterpret_cast<const __kernel_timespec*>(link->addr),
                        -ETIME);
        }
        run(i);
    }

    // CLOSE: nothing of ours may wait on the fd once it is closed (the relays cancel first; what
    // is left is cancelled here), and its registration goes.
    int close(int fd) {
        if (std::size_t(fd) < fds.size()) {
            FdState& f = fds[std::size_t(fd)];
            while (!f.ops.empty())
                finish(f.ops.back(), -ECANCELED);
            if (f.desc) {
                f.desc->release();
                f.desc.reset();
            }
            f.nonblock = false;
        }
        return ::close(fd) == 0 ? 0 : -errno;
    }
};

EpollRing::EpollRing(unsigned entries) : impl_(std::make_unique<Impl>(entries)) {
    // What it carries out: sockets made, setsockopt and shutdown done at submission; no
    // zero-copy sends, no bundles, no direct descriptors.
    features_.socket_op = features_.shutdown_op = features_.uring_cmd = true;
}

EpollRing::~EpollRing() {
    for (auto& f : impl_->fds)  // registrations only: the fds are their owners' to close
        if (f.desc) f.desc->release();
}

// Asio allocates its handlers: out of memory in these four ends the process (terminate), as
// nothing on the data path throws or catches.
// NOLINTBEGIN(bugprone-exception-escape)
io_uring_sqe* EpollRing::sqe() noexcept {
    Impl& m = *impl_;
    if (m.sq_n == m.sq.size()) submit();
    if (m.sq_n == m.sq.size()) return nullptr;
    io_uring_sqe* s = &m.sq[m.sq_n++];
    std::memset(s, 0, sizeof *s);
    return s;
}

void EpollRing::reserve(unsigned n) noexcept {
    if (impl_->sq.size() - impl_->sq_n < n) submit();
}

int EpollRing::submit() noexcept {
    Impl& m = *impl_;
    const unsigned n = m.sq_n;
    m.sq_n = 0;
    for (unsigned k = 0; k < n; ++k) {
        const io_uring_sqe& s = m.sq[k];
        const io_uring_sqe* link = nullptr;
        if ((s.flags & IOSQE_IO_LINK) && k + 1 < n && m.sq[k + 1].opcode == IORING_OP_LINK_TIMEOUT)
            link = &m.sq[++k];
        m.start(s, link);
    }
    return int(n);
}

int EpollRing::submit_and_wait(const __kernel_timespec* timeout) noexcept {
    Impl& m = *impl_;
    const int submitted = submit();
    if (m.cq.empty()) {
        if (timeout) {
            const auto deadline = Clock::now() + duration_of(timeout);
            while (m.cq.empty() && m.io.run_one_until(deadline)) {
            }
        } else {
            while (m.cq.empty())
                m.io.run_one();
        }
    }
    for (unsigned k = 0; k < kPollBatch && m.io.poll_one(); ++k) {
    }
    return m.cq.empty() ? -ETIME : submitted;
}
// NOLINTEND(bugprone-exception-escape)

unsigned EpollRing::drain_cqes(CqeFn fn, void* ctx) noexcept {
    Impl& m = *impl_;
    m.batch.clear();
    m.batch.swap(m.cq);
    for (io_uring_cqe& c : m.batch)
        fn(ctx, &c);
    return unsigned(m.batch.size());
}

int EpollRing::register_buf_ring(io_uring_buf_reg& reg) noexcept {
    return impl_->groups.add(reg);
}

void EpollRing::unregister_buf_ring(std::uint16_t group) noexcept {
    impl_->groups.remove(group);
}

}  // namespace fp::net
