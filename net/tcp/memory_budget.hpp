#pragma once
// MemoryBudget: how much a connection may queue for a slow peer, from how much of the worker's
// arena is still free. The kernel's tcp_mem in fragproxy's terms (three levels, below / pressure /
// above), with the per-socket bound replaced by a fair share of the arena:
//
//   below     more than 1/4 of the normal zone free: a queue may hold max_inflight, but never more
//             than its share of the budget (half the normal zone) among the queues that hold
//             data (1,000 stuck connections on a 64 MiB arena get 30 KiB each, not 1 MiB);
//   pressure  at most 1/4 free: also at most kPressureQueue; the worker copies stuck queues that
//             pin shared receive pages into compact fragments (collapse);
//   above     at most 1/16 free: nothing more is queued behind data already waiting.
//
// A receive is armed with a grant: the bytes it may take before it stops by itself (the
// kernel's multishot receive limit, sqe->optlen, 6.17), so a burst cannot overshoot. The grant is
// what the connection's queue may still take, and never more than the budget has left after
// every queued byte and every grant outstanding: the sum stays within the budget whatever the
// number of connections. A queue that is empty always gets a small grant, so fresh connections (and
// ones whose peer reads) keep moving one receive at a time even with the budget spent; a queue
// that holds data and gets no grant pauses until its send completes. Bytes queued are committed
// (they cannot be dropped), so the bound is on what is taken next.
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace fp::net {

enum class Pressure : std::uint8_t { kBelow, kPressure, kAbove };

struct MemoryBudget {
    static constexpr std::uint32_t kMinQueue = 16 * 1024;       // a share never goes below this
    static constexpr std::uint32_t kPressureQueue = 64 * 1024;  // the bound under pressure
    // An empty queue's grant: kFreshGrant while the budget has it (one full 64 KiB loopback
    // segment: a window below the peer's MSS waits on delayed ACKs), else kMinGrant whatever the
    // budget says, so fresh connections keep moving and N stuck ones add at most N x kMinGrant.
    static constexpr std::uint32_t kFreshGrant = 64 * 1024;
    static constexpr std::uint32_t kMinGrant = 4 * 1024;

    static Pressure level(std::size_t free_normal, std::size_t normal) noexcept {
        if (free_normal * 4 > normal) return Pressure::kBelow;
        if (free_normal * 16 > normal) return Pressure::kPressure;
        return Pressure::kAbove;
    }

    // The bytes one direction of a connection may hold queued; `queuing`: queues holding data.
    static std::uint32_t queue_limit(Pressure level, std::uint32_t max_inflight, std::size_t normal,
                                     std::uint32_t queuing) noexcept {
        if (level == Pressure::kAbove) return 0;
        std::size_t share = normal / 2 / std::max<std::uint32_t>(queuing, 1);
        std::size_t limit =
            std::min<std::size_t>(max_inflight, std::max<std::size_t>(share, kMinQueue));
        if (level == Pressure::kPressure) limit = std::min<std::size_t>(limit, kPressureQueue);
        return static_cast<std::uint32_t>(limit);
    }

    // The bytes a receive may be armed for, its queue holding `queue_bytes`; `queued` and
    // `granted`: the worker's queued bytes and outstanding grants. 0: pause.
    static std::uint32_t grant(std::uint32_t limit, std::size_t normal, std::uint32_t queue_bytes,
                               std::uint64_t queued, std::uint64_t granted) noexcept {
        const std::uint64_t budget = normal / 2;
        std::uint64_t room = limit > queue_bytes ? limit - queue_bytes : 0;
        // Hysteresis, as a pause at the limit with a resume at half of it: a queue more than half
        // full waits for its send rather than taking slivers (each grant is a re-arm).
        if (room < limit / 2) room = 0;
        std::uint64_t left = budget > queued + granted ? budget - queued - granted : 0;
        std::uint64_t g = std::min(room, left);
        if (queue_bytes == 0)
            g = std::max<std::uint64_t>(g, left >= kFreshGrant ? kFreshGrant : kMinGrant);
        return static_cast<std::uint32_t>(g);
    }
};

}  // namespace fp::net
