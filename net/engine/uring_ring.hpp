#pragma once
// UringRing: RAII over one io_uring instance. Setup flags are chosen by trying the best set first
// and falling back (each a kernel behaviour the worker relies on or merely profits from):
//  - SINGLE_ISSUER (6.0): only the worker thread submits; lets the kernel skip submit locking.
//  - DEFER_TASKRUN (6.1): completions run only when the worker waits for them, in batches, instead
//    of interrupting it with task work at arbitrary points.
//  - COOP_TASKRUN (5.19): no IPI to the worker to run task work; it runs on the next transition.
//  - SUBMIT_ALL (5.18): a failing SQE does not stop the rest of the batch from being submitted.
// Opcode support is probed once (io_uring_get_probe_ring). Setup failures throw (startup path).
#include <liburing.h>
#include <sys/uio.h>

#include <string>

#include "net/base/modes.hpp"
#include "net/engine/ring.hpp"

namespace fp::net {

// Why io_uring_setup failed with `err`, for the operator: RLIMIT_MEMLOCK and what the ring needs
// (ENOMEM), kernel.io_uring_disabled or a seccomp filter (EPERM, ENOSYS); "" when nothing is known.
std::string ring_error_cause(int err, unsigned entries);

class UringRing final : public Ring {
  public:
    explicit UringRing(unsigned entries, unsigned flags = 0);  // exactly these flags
    // The best setup flags the kernel accepts, from `taskrun` down (kAuto: from DEFER_TASKRUN);
    // any other choice than kAuto is taken as it is or refused (throws).
    static UringRing best(unsigned entries, TaskRun taskrun = TaskRun::kAuto);
    ~UringRing() override;
    UringRing(UringRing&& other) noexcept;
    UringRing& operator=(UringRing&&) = delete;

    io_uring* get() noexcept { return &ring_; }  // the kernel's ring (probes, registrations)
    std::string describe() const override { return features_.describe(); }

    io_uring_sqe* sqe() noexcept override {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        if (s) return s;
        io_uring_submit(&ring_);
        return io_uring_get_sqe(&ring_);
    }
    void reserve(unsigned n) noexcept override {
        if (io_uring_sq_space_left(&ring_) < n) io_uring_submit(&ring_);
    }
    int submit() noexcept override { return io_uring_submit(&ring_); }
    int submit_and_wait(const __kernel_timespec* timeout) noexcept override;
    bool batch_wait() const noexcept override;
    // Two enters: liburing 2.3 has no call that passes min_wait_usec; with nothing come, -ETIME
    // after a second.
    int submit_and_wait_batch(unsigned batch, unsigned min_wait_us) noexcept override;

    bool register_direct(unsigned n) noexcept override;
    void close_direct_now(int index) noexcept override;
    int register_napi(std::uint32_t us) noexcept override;
    int unregister_napi(std::uint32_t* us) noexcept override;
    int register_buf_ring(io_uring_buf_reg& reg) noexcept override {
        return io_uring_register_buf_ring(&ring_, &reg, 0);
    }
    void unregister_buf_ring(std::uint16_t group) noexcept override {
        io_uring_unregister_buf_ring(&ring_, group);
    }
    // The arena as fixed buffers (FixedBuffers): 0 or -errno.
    int register_buffers(const iovec* iov, unsigned n) noexcept {
        return io_uring_register_buffers(&ring_, iov, n);
    }
    void unregister_buffers() noexcept { io_uring_unregister_buffers(&ring_); }

  protected:
    unsigned drain_cqes(CqeFn fn, void* ctx) noexcept override {
        unsigned head = 0, seen = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            fn(ctx, cqe);
            ++seen;
        }
        io_uring_cq_advance(&ring_, seen);
        return seen;
    }

  private:
    UringRing() = default;
    void probe();

    io_uring ring_{};
    bool live_ = false;
};

}  // namespace fp::net
