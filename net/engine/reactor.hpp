#pragma once
// Reactor: the one way SQEs are submitted and completions accounted, shared by the worker and its
// relays. submit() tags an SQE (op, slot, side, generation: user_data.hpp) and counts it in
// flight, and in its slot's `pending` when the op belongs to a slot table; complete() uncounts it
// when its final CQE arrives (no IORING_CQE_F_MORE: a multishot's last, any other op's only).
// The worker stops once nothing is in flight. It also keeps the worker's clock (coarse, no
// syscall) and the gap rule: time in which the worker did not run counts toward no timer.
//
// Owner thread only.
#include <liburing.h>
#include <unistd.h>

#include <cstdint>

#include "net/engine/ring.hpp"
#include "net/engine/slot_table.hpp"
#include "net/engine/user_data.hpp"

namespace fp::net {

// The workers' clock, in milliseconds (CLOCK_MONOTONIC_COARSE: vDSO, no syscall); other threads
// read it to compare with a worker's.
std::uint64_t monotonic_ms() noexcept;

class Reactor {
  public:
    explicit Reactor(Ring& ring) : ring_(ring) {}

    // An SQE tagged for (op, slot, side), counted in flight; null only when the SQ is full and
    // cannot be submitted (the caller treats it as a failed operation).
    io_uring_sqe* submit(Op op, std::uint32_t slot = 0, unsigned side = 0) noexcept {
        return tagged(Tag{op, side, slot, 0});
    }
    // The same for an op of `table`'s slot: tagged with the slot's generation and counted in its
    // `pending` too.
    template <class T>
    io_uring_sqe* submit(SlotTable<T>& table, Op op, std::uint32_t slot,
                         unsigned side = 0) noexcept {
        io_uring_sqe* s = tagged(Tag{op, side, slot, table[slot].gen});
        if (s) ++table[slot].pending;
        return s;
    }
    // A cancel of every op the slot's SQE tagged (op, slot, side) stands for, itself tagged
    // `as` (kCancel, kMisc, ...).
    template <class T>
    io_uring_sqe* cancel(SlotTable<T>& table, Op target, std::uint32_t slot, unsigned side,
                         Op as) noexcept {
        io_uring_sqe* s = submit(table, as, slot, side);
        if (s) io_uring_prep_cancel64(s, Tag{target, side, slot, table[slot].gen}.pack(), 0);
        return s;
    }
    // Room for n SQEs that must be prepared together (a linked pair).
    void reserve(unsigned n) noexcept { ring_.reserve(n); }

    static bool final(const io_uring_cqe* cqe) noexcept {
        return !(cqe->flags & IORING_CQE_F_MORE);
    }
    // Every CQE passes here once.
    void complete(const io_uring_cqe* cqe) noexcept {
        if (final(cqe)) --in_flight_;
    }
    // ... and a slot op's CQE here too: its entry, uncounted on the final CQE, or null when the
    // CQE belongs to an earlier life of the slot (cannot happen: slots wait for their last CQE).
    template <class T>
    T* complete(SlotTable<T>& table, const Tag& t, const io_uring_cqe* cqe) noexcept {
        T* e = table.find(t.slot, t.gen);
        if (e && final(cqe)) --e->pending;
        return e;
    }

    // Closes an fd nothing waits for, or a direct descriptor, through the ring (a plain close()
    // or a table update if the SQ is full).
    void close_fd(int fd, bool direct = false) noexcept {
        io_uring_sqe* s = submit(Op::kMisc);
        if (!s) {
            if (direct)
                ring_.close_direct_now(fd);
            else
                ::close(fd);
            return;
        }
        if (direct)
            io_uring_prep_close_direct(s, unsigned(fd));
        else
            io_uring_prep_close(s, fd);
    }

    std::uint64_t in_flight() const noexcept { return in_flight_; }
    Ring& ring() noexcept { return ring_; }
    const RingFeatures& features() const noexcept { return ring_.features(); }

    // The clock, read once per batch (CLOCK_MONOTONIC_COARSE, vDSO).
    std::uint64_t now_ms() const noexcept { return now_ms_; }
    void update_clock() noexcept;
    // Milliseconds since t, not counting time the worker was not running.
    std::uint64_t since(std::uint64_t t) const noexcept {
        return now_ms_ - (t > resumed_ms_ ? t : resumed_ms_);
    }

  private:
    io_uring_sqe* tagged(const Tag& t) noexcept {
        io_uring_sqe* s = ring_.sqe();
        if (!s) return nullptr;
        io_uring_sqe_set_data64(s, t.pack());
        ++in_flight_;
        return s;
    }

    Ring& ring_;
    std::uint64_t in_flight_ = 0;
    std::uint64_t now_ms_ = 0;
    std::uint64_t resumed_ms_ = 0;  // end of the last gap in which the worker was not running
};

}  // namespace fp::net
