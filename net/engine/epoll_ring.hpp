#pragma once
// EpollRing: the epoll backend. It takes the very SQEs the relays prepare for io_uring and
// carries them out in userspace on the worker's own Asio io_context (epoll): each operation is
// tried at once, as the kernel's io_uring tries it inline, and waits for readiness only after the
// socket said EAGAIN (Asio registers each fd once, edge-triggered); its result is posted as the
// CQE the kernel would have posted (res, F_MORE for a multishot that goes on, F_BUFFER and the
// buffer id for a provided buffer). So the relays, the worker and the allocator are the same code
// on both backends: only submission and completion differ. Provided-buffer rings are read as the
// kernel reads them (buf_rings.hpp), one buffer per receive (no incremental consumption: the
// fragments receive path).
//
// Carried out: NOP, READ (the worker's eventfd), ACCEPT (multishot), SOCKET, CONNECT (with a
// LINK_TIMEOUT), RECV (multishot, buffer select, per-receive and total caps), RECVMSG (multishot,
// buffer select, the kernel's io_uring_recvmsg_out layout), SENDMSG, SHUTDOWN, CLOSE, URING_CMD
// (setsockopt), ASYNC_CANCEL (by user_data, by fd, all), TIMEOUT and TIMEOUT_REMOVE. Anything
// else completes with -EINVAL, as an old kernel would answer.
//
// Owner thread only; no locks.
#include <liburing.h>
#include <linux/time_types.h>

#include <memory>

#include "net/engine/ring.hpp"

namespace fp::net {

class EpollRing final : public Ring {
  public:
    explicit EpollRing(unsigned entries);
    ~EpollRing() override;

    std::string describe() const override { return "epoll (Asio)"; }
    // Asio allocates its handlers: out of memory in these ends the process (terminate).
    // NOLINTBEGIN(bugprone-exception-escape)
    io_uring_sqe* sqe() noexcept override;
    void reserve(unsigned n) noexcept override;
    // Starts every queued SQE (immediate ones complete now); returns how many.
    int submit() noexcept override;
    // submit(), then runs the io_context until a CQE is ready, or `timeout` (null: none) passes
    // (-ETIME); at least one CQE is ready when it returns 0 or more.
    int submit_and_wait(const __kernel_timespec* timeout) noexcept override;
    // NOLINTEND(bugprone-exception-escape)
    // -EINVAL for incremental consumption, which only the kernel does.
    int register_buf_ring(io_uring_buf_reg& reg) noexcept override;
    void unregister_buf_ring(std::uint16_t group) noexcept override;

  protected:
    // The CQEs ready when it is called; CQEs posted meanwhile wait for the next call.
    unsigned drain_cqes(CqeFn fn, void* ctx) noexcept override;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fp::net
