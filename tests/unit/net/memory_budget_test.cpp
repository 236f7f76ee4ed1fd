#include <doctest/doctest.h>

#include <cerrno>
#include <string>

#include "net/engine/uring_ring.hpp"
#include "net/tcp/memory_budget.hpp"

using fp::net::MemoryBudget;
using fp::net::Pressure;

namespace {
constexpr std::size_t kMiB = 1 << 20;
constexpr std::size_t kNormal = 60 * kMiB;  // a 64 MiB arena's normal zone
}  // namespace

TEST_CASE("pressure levels follow the normal zone's free share") {
    CHECK(MemoryBudget::level(kNormal, kNormal) == Pressure::kBelow);
    CHECK(MemoryBudget::level(kNormal / 4 + 1, kNormal) == Pressure::kBelow);
    CHECK(MemoryBudget::level(kNormal / 4, kNormal) == Pressure::kPressure);
    CHECK(MemoryBudget::level(kNormal / 16 + 1, kNormal) == Pressure::kPressure);
    CHECK(MemoryBudget::level(kNormal / 16, kNormal) == Pressure::kAbove);
    CHECK(MemoryBudget::level(0, kNormal) == Pressure::kAbove);
}

TEST_CASE("a queue's limit: max_inflight, a fair share of the budget, less under pressure") {
    const std::uint32_t mib = 1 << 20;
    CHECK(MemoryBudget::queue_limit(Pressure::kBelow, mib, kNormal, 1) == mib);
    // 1,000 queues holding data share half the normal zone: 30 KiB each, not 1 MiB.
    CHECK(MemoryBudget::queue_limit(Pressure::kBelow, mib, kNormal, 1000) == kNormal / 2 / 1000);
    // Never below kMinQueue, however many queues.
    CHECK(MemoryBudget::queue_limit(Pressure::kBelow, mib, kNormal, 1000000) ==
          MemoryBudget::kMinQueue);
    CHECK(MemoryBudget::queue_limit(Pressure::kPressure, mib, kNormal, 1) ==
          MemoryBudget::kPressureQueue);
    CHECK(MemoryBudget::queue_limit(Pressure::kAbove, mib, kNormal, 1) == 0);
}

TEST_CASE("grants stay within the budget; an empty queue always gets one") {
    const std::uint64_t budget = kNormal / 2;
    // Room in the queue and in the budget: the queue's room.
    CHECK(MemoryBudget::grant(1 << 20, kNormal, 0, 0, 0) == 1u << 20);
    CHECK(MemoryBudget::grant(1 << 20, kNormal, 300 << 10, 0, 0) == (1u << 20) - (300u << 10));
    // The budget's rest bounds it, counting queued bytes and outstanding grants.
    CHECK(MemoryBudget::grant(1 << 20, kNormal, 4096, budget - 10000, 6000) == 4000);
    // Spent budget: a queue holding data pauses; an empty one gets kMinGrant, or kFreshGrant
    // while the budget still has that much.
    CHECK(MemoryBudget::grant(1 << 20, kNormal, 4096, budget, 0) == 0);
    CHECK(MemoryBudget::grant(1 << 20, kNormal, 0, budget, 0) == MemoryBudget::kMinGrant);
    CHECK(MemoryBudget::grant(1 << 20, kNormal, 0, budget - 100000, 0) == 100000);
    CHECK(MemoryBudget::grant(0, kNormal, 0, 0, 0) == MemoryBudget::kFreshGrant);
    // A full queue gets nothing even with budget left, nor one more than half full.
    CHECK(MemoryBudget::grant(64 << 10, kNormal, 64 << 10, 0, 0) == 0);
    CHECK(MemoryBudget::grant(1 << 20, kNormal, 600 << 10, 0, 0) == 0);
}

TEST_CASE("io_uring setup errors name their cause") {
    std::string memlock = fp::net::ring_error_cause(ENOMEM, 4096);
    CHECK(memlock.find("RLIMIT_MEMLOCK is ") == 0);
    CHECK(memlock.find("each worker's ring locks about 392 KiB") != std::string::npos);
    CHECK(fp::net::ring_error_cause(EINVAL, 4096).empty());
}
