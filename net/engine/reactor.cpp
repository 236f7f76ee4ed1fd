#include "net/engine/reactor.hpp"

#include <ctime>

namespace fp::net {
namespace {

// The loop never waits much past the once-a-second tick: a longer gap between two batches means
// the worker was not running (the process was stopped, the machine paused).
constexpr std::uint64_t kPausedGapMs = 1500;

}  // namespace

// That time counts toward no timer: the completions of it may still be arriving (the kernel runs
// deferred completions in bounded chunks), and the connections they belong to are not idle.
std::uint64_t monotonic_ms() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);  // vDSO: no syscall
    return std::uint64_t(ts.tv_sec) * 1000 + std::uint64_t(ts.tv_nsec) / 1000000;
}

void Reactor::update_clock() noexcept {
    std::uint64_t before = now_ms_;
    now_ms_ = monotonic_ms();
    if (before && now_ms_ - before > kPausedGapMs) resumed_ms_ = now_ms_;
}

}  // namespace fp::net
