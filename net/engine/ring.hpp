#pragma once
// Ring: the engine seam. The relays, the reactor and the worker prepare io_uring SQEs (the
// liburing prep helpers only fill a struct) and take io_uring CQEs; what carries them out is one
// of three implementations of this interface:
//  - UringRing (uring_ring.hpp): the kernel's io_uring.
//  - EpollRing (epoll_ring.hpp): the same SQEs carried out in userspace on Asio (epoll), where
//    io_uring is refused or too old.
//  - ScriptedRing (tests/support/scripted_ring.hpp): records the SQEs and delivers the CQEs a
//    test chooses, for the error paths that real sockets reach only by luck.
// One virtual call per SQE and per batch of CQEs (the CQEs themselves go through a function
// pointer the template below makes: no allocation, no std::function).
#include <liburing.h>
#include <linux/time_types.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace fp::net {

struct RingFeatures {
    unsigned setup_flags = 0;
    bool send_zc = false;     // IORING_OP_SEND_ZC (6.0)
    bool sendmsg_zc = false;  // IORING_OP_SENDMSG_ZC (6.1)
    bool socket_op = false;   // IORING_OP_SOCKET (5.19)
    bool shutdown_op = false;
    bool uring_cmd = false;        // IORING_OP_URING_CMD: socket commands (setsockopt, 6.7)
    bool fd_install = false;       // IORING_OP_FIXED_FD_INSTALL (6.8)
    unsigned direct_files = 0;     // entries of the direct-descriptor table (register_direct)
    unsigned kernel_features = 0;  // io_uring_params.features (IORING_FEAT_*)
    std::string describe() const;
    std::string describe_flags() const;  // the setup flags only
};

class Ring {
  public:
    virtual ~Ring() = default;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    // What carries the SQEs out, for the start-up line: "io_uring ...", "epoll (Asio)".
    virtual std::string describe() const = 0;
    const RingFeatures& features() const noexcept { return features_; }

    // An SQE, submitting what is queued first when the SQ is full. Null only if that fails.
    virtual io_uring_sqe* sqe() noexcept = 0;
    // Makes room for n SQEs that must be prepared together (a linked pair), submitting if needed.
    virtual void reserve(unsigned n) noexcept = 0;
    virtual int submit() noexcept = 0;
    // Submits and waits for at least one CQE, or `timeout` (null: none; -ETIME when it passed).
    virtual int submit_and_wait(const __kernel_timespec* timeout) noexcept = 0;
    // Whether the ring can wait for a batch with a minimum timeout (io_uring on 6.12 only).
    virtual bool batch_wait() const noexcept { return false; }
    // Submits, then waits for `batch` CQEs, but returns once `min_wait_us` has passed with
    // whatever has come, if anything (only where batch_wait()). Returns what the submit
    // returned, or -errno.
    virtual int submit_and_wait_batch(unsigned /*batch*/, unsigned /*min_wait_us*/) noexcept {
        return -EOPNOTSUPP;
    }
    // Calls f(cqe) for each CQE ready, then marks them seen; returns how many.
    template <class F>
    unsigned for_each_cqe(F&& f) noexcept {
        return drain_cqes([](void* ctx, io_uring_cqe* c) noexcept { (*static_cast<F*>(ctx))(c); },
                          &f);
    }

    // A table of n direct descriptors (the ring's fixed-file table, sparse: every entry free),
    // for accepts and sockets made into it. False where the ring has none (epoll): descriptors
    // stay plain fds there.
    virtual bool register_direct(unsigned /*n*/) noexcept { return false; }
    // Frees a direct descriptor without an SQE (its close when the SQ is full).
    virtual void close_direct_now(int /*index*/) noexcept {}
    // NAPI busy polling for `us` microseconds per wait (6.9). 0 or -errno (-EINVAL: the kernel
    // has none; other rings: -EOPNOTSUPP). unregister_napi gives back what was set.
    virtual int register_napi(std::uint32_t /*us*/) noexcept { return -EOPNOTSUPP; }
    virtual int unregister_napi(std::uint32_t* /*us*/) noexcept { return -EOPNOTSUPP; }
    // A provided-buffer ring (io_uring_register_buf_ring's arguments), read as the kernel reads
    // it: the registrant's tail, the ring's head.
    virtual int register_buf_ring(io_uring_buf_reg& reg) noexcept = 0;
    virtual void unregister_buf_ring(std::uint16_t group) noexcept = 0;

  protected:
    Ring() = default;
    using CqeFn = void (*)(void* ctx, io_uring_cqe* cqe) noexcept;
    // Calls fn(ctx, cqe) for each CQE ready (a CQE posted meanwhile may wait for the next call),
    // marks them seen; returns how many.
    virtual unsigned drain_cqes(CqeFn fn, void* ctx) noexcept = 0;

    RingFeatures features_;
};

}  // namespace fp::net
