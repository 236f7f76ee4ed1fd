#pragma once
// Ring: RAII over one io_uring instance (queue_init / queue_exit). Move-only; the worker that owns
// it is the only thread that submits to it. Setup failures throw std::system_error (startup path).
#include <liburing.h>

namespace fp::net {

class Ring {
  public:
    explicit Ring(unsigned entries, unsigned flags = 0);
    ~Ring();
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    io_uring* get() noexcept { return &ring_; }

  private:
    io_uring ring_{};
};

}  // namespace fp::net
