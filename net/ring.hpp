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

#include <string>

namespace fp::net {

struct RingFeatures {
    unsigned setup_flags = 0;
    bool send_zc = false;    // IORING_OP_SEND_ZC (6.0)
    bool socket_op = false;  // IORING_OP_SOCKET (5.19)
    bool shutdown_op = false;
    bool uring_cmd = false;        // IORING_OP_URING_CMD: socket commands (setsockopt, 6.7)
    unsigned kernel_features = 0;  // io_uring_params.features (IORING_FEAT_*)
    std::string describe() const;
    std::string describe_flags() const;  // the setup flags only
};

// Why io_uring_setup failed with `err`, for the operator: RLIMIT_MEMLOCK and what the ring needs
// (ENOMEM), kernel.io_uring_disabled or a seccomp filter (EPERM, ENOSYS); "" when nothing is known.
std::string ring_error_cause(int err, unsigned entries);

class Ring {
  public:
    explicit Ring(unsigned entries, unsigned flags = 0);  // exactly these flags
    static Ring best(unsigned entries);                   // best flags the kernel accepts
    ~Ring();
    Ring(Ring&& other) noexcept;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    Ring& operator=(Ring&&) = delete;

    io_uring* get() noexcept { return &ring_; }
    const RingFeatures& features() const noexcept { return features_; }
    // An SQE, submitting what is queued first when the SQ is full. Null only if that fails.
    io_uring_sqe* sqe() noexcept;
    // Makes room for n SQEs that must be prepared together (a linked pair), submitting if needed.
    void reserve(unsigned n) noexcept {
        if (io_uring_sq_space_left(&ring_) < n) io_uring_submit(&ring_);
    }

  private:
    Ring() = default;
    void probe();

    io_uring ring_{};
    bool live_ = false;
    RingFeatures features_;
};

}  // namespace fp::net
