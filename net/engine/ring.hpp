#pragma once
// Ring: RAII over one io_uring instance. Setup flags are chosen by trying the best set first and
// falling back (each a kernel behaviour the worker relies on or merely profits from):
//  - SINGLE_ISSUER (6.0): only the worker thread submits; lets the kernel skip submit locking.
//  - DEFER_TASKRUN (6.1): completions run only when the worker waits for them, in batches, instead
//    of interrupting it with task work at arbitrary points.
//  - COOP_TASKRUN (5.19): no IPI to the worker to run task work; it runs on the next transition.
//  - SUBMIT_ALL (5.18): a failing SQE does not stop the rest of the batch from being submitted.
// Opcode support is probed once (io_uring_get_probe_ring). Setup failures throw (startup path).
#include <liburing.h>

#include <memory>
#include <span>
#include <string>

#include "net/base/modes.hpp"
#include "net/engine/emulated_ring.hpp"

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

// Why io_uring_setup failed with `err`, for the operator: RLIMIT_MEMLOCK and what the ring needs
// (ENOMEM), kernel.io_uring_disabled or a seccomp filter (EPERM, ENOSYS); "" when nothing is known.
std::string ring_error_cause(int err, unsigned entries);

// The two backends behind one submission and completion interface: the kernel's io_uring, or
// the epoll backend (net/engine/emulated_ring.hpp), which carries out the same SQEs in userspace
// on Asio. Everything above the Ring (reactor, relays, worker) is the same code on both.
class Ring {
  public:
    explicit Ring(unsigned entries, unsigned flags = 0);  // exactly these flags
    // The best setup flags the kernel accepts, from `taskrun` down (kAuto: from DEFER_TASKRUN);
    // any other choice than kAuto is taken as it is or refused (throws).
    static Ring best(unsigned entries, TaskRun taskrun = TaskRun::kAuto);
    static Ring epoll(unsigned entries);  // the epoll backend
    ~Ring();
    Ring(Ring&& other) noexcept;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    Ring& operator=(Ring&&) = delete;

    bool emulated() const noexcept { return emu_ != nullptr; }
    io_uring* get() noexcept { return &ring_; }  // the kernel's ring (not emulated())
    const RingFeatures& features() const noexcept { return features_; }
    // An SQE, submitting what is queued first when the SQ is full. Null only if that fails.
    io_uring_sqe* sqe() noexcept;
    // Makes room for n SQEs that must be prepared together (a linked pair), submitting if needed.
    void reserve(unsigned n) noexcept {
        if (emu_) {
            if (emu_->space_left() < n) emu_->submit();
        } else if (io_uring_sq_space_left(&ring_) < n) {
            io_uring_submit(&ring_);
        }
    }
    int submit() noexcept { return emu_ ? emu_->submit() : io_uring_submit(&ring_); }
    // Submits and waits for at least one CQE, or `timeout` (null: none; -ETIME when it passed).
    int submit_and_wait(const __kernel_timespec* timeout) noexcept;
    // Whether the kernel can wait for a batch with a minimum timeout (6.12; not emulated()).
    bool batch_wait() const noexcept;
    // Submits, then waits for `batch` CQEs, but returns once `min_wait_us` has passed with
    // whatever has come, if anything; else for the first that comes (-ETIME after a second). Two
    // enters: liburing 2.3 has no call that passes min_wait_usec. Returns what the submit
    // returned, or -errno.
    int submit_and_wait_batch(unsigned batch, unsigned min_wait_us) noexcept;
    // Calls f(cqe) for each CQE ready, then marks them seen; returns how many.
    template <class F>
    unsigned for_each_cqe(F&& f) noexcept {
        unsigned seen = 0;
        if (emu_) {
            for (io_uring_cqe& c : emu_->take_cqes()) {
                f(&c);
                ++seen;
            }
            return seen;
        }
        unsigned head = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            f(cqe);
            ++seen;
        }
        io_uring_cq_advance(&ring_, seen);
        return seen;
    }
    // A table of n direct descriptors (the ring's fixed-file table, sparse: every entry free),
    // for accepts and sockets made into it. False where the kernel refuses, or on the epoll
    // backend: descriptors stay plain fds there.
    bool register_direct(unsigned n) noexcept;
    // NAPI busy polling for `us` microseconds per wait (6.9). 0 or -errno (-EINVAL: the kernel
    // has none; the epoll backend: -EOPNOTSUPP). unregister_napi gives back what was set.
    int register_napi(std::uint32_t us) noexcept;
    int unregister_napi(std::uint32_t* us) noexcept;
    // Frees a direct descriptor without the ring (its close when the SQ is full).
    void close_direct_now(int index) noexcept;
    int register_buf_ring(io_uring_buf_reg& reg) noexcept {
        return emu_ ? emu_->register_buf_ring(reg) : io_uring_register_buf_ring(&ring_, &reg, 0);
    }
    void unregister_buf_ring(std::uint16_t group) noexcept {
        if (emu_)
            emu_->unregister_buf_ring(group);
        else
            io_uring_unregister_buf_ring(&ring_, group);
    }

  private:
    Ring() = default;
    void probe();

    io_uring ring_{};
    bool live_ = false;
    RingFeatures features_;
    std::unique_ptr<EmulatedRing> emu_;
};

}  // namespace fp::net
