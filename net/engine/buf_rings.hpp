#pragma once
// BufRings: provided-buffer rings (io_uring_register_buf_ring) read from the kernel's side, for
// the rings that carry SQEs out in userspace (the epoll backend, the tests' scripted ring): the
// registrant publishes buffers by its tail, the ring takes them at its head, one buffer per
// completion (no incremental consumption: only the kernel does that).
//
// Owner thread only.
#include <liburing.h>

#include <cerrno>
#include <cstdint>
#include <vector>

namespace fp::net {

class BufRings {
  public:
    // io_uring_register_buf_ring's checks: a power-of-two ring, no flags (-EINVAL), one ring per
    // group (-EEXIST).
    int add(const io_uring_buf_reg& reg) noexcept {
        if (reg.pad || reg.ring_entries == 0 || (reg.ring_entries & (reg.ring_entries - 1)))
            return -EINVAL;
        if (reg.bgid >= groups_.size()) groups_.resize(reg.bgid + 1u);
        if (groups_[reg.bgid].br) return -EEXIST;
        groups_[reg.bgid] = {reinterpret_cast<io_uring_buf_ring*>(reg.ring_addr),
                             reg.ring_entries - 1, 0};
        return 0;
    }
    void remove(std::uint16_t group) noexcept {
        if (group < groups_.size()) groups_[group] = {};
    }
    // The next buffer of the group, or null (none published, or no such group).
    io_uring_buf* next(std::uint16_t group) noexcept {
        if (group >= groups_.size() || !groups_[group].br) return nullptr;
        Group& g = groups_[group];
        const std::uint16_t tail = __atomic_load_n(&g.br->tail, __ATOMIC_ACQUIRE);
        return g.head == tail ? nullptr : &g.br->bufs[g.head & g.mask];
    }
    // Buffers published and not yet used.
    unsigned available(std::uint16_t group) const noexcept {
        if (group >= groups_.size() || !groups_[group].br) return 0;
        const Group& g = groups_[group];
        return std::uint16_t(__atomic_load_n(&g.br->tail, __ATOMIC_ACQUIRE) - g.head);
    }
    // next() was used by a completion.
    void consume(std::uint16_t group) noexcept { ++groups_[group].head; }

  private:
    struct Group {
        io_uring_buf_ring* br = nullptr;
        unsigned mask = 0;
        std::uint16_t head = 0;
    };
    std::vector<Group> groups_;
};

}  // namespace fp::net
