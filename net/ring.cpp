#include "net/ring.hpp"

#include <string>
#include <system_error>

namespace fp::net {

Ring::Ring(unsigned entries, unsigned flags) {
    int rc = io_uring_queue_init(entries, &ring_, flags);
    if (rc < 0)
        throw std::system_error(-rc, std::generic_category(),
                                "io_uring_queue_init(" + std::to_string(entries) + ")");
}

Ring::~Ring() {
    io_uring_queue_exit(&ring_);
}

}  // namespace fp::net
