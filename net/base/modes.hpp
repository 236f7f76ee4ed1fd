#pragma once
// The engine's modes, as the configuration names them: plain enums and their names, with no
// dependency, so the config layer (and its fuzzer) can parse and print them without linking the
// engine that acts on them (net/engine/features.hpp: what each needs, how auto picks).
#include <cstdint>

namespace fp::net {

// How TCP receives land in memory.
enum class RecvPath : std::uint8_t { kAuto, kIncremental, kFragments };
// backend: io_uring (the kernel's ring), or epoll (net/engine/epoll_ring.hpp: the same SQEs
// carried out in userspace on Asio, where io_uring is refused); auto: io_uring where
// io_uring_setup works.
enum class Backend : std::uint8_t { kAuto, kIoUring, kEpoll };
// io_uring's task work (the completions' deferred part): run only when the worker waits
// (DEFER_TASKRUN, 6.1, with SINGLE_ISSUER), cooperatively at its next syscall (COOP_TASKRUN,
// 5.19), or by interrupting it (none). auto: the first of these the kernel accepts. The others
// are there to measure what each is worth (bench peers fragproxy-coop, fragproxy-plain).
enum class TaskRun : std::uint8_t { kAuto, kDefer, kCoop, kNone };

constexpr const char* recv_path_name(RecvPath p) noexcept {
    switch (p) {
        case RecvPath::kIncremental:
            return "incremental";
        case RecvPath::kFragments:
            return "fragments";
        default:
            return "auto";
    }
}

constexpr const char* backend_name(Backend b) noexcept {
    switch (b) {
        case Backend::kIoUring:
            return "io_uring";
        case Backend::kEpoll:
            return "epoll";
        default:
            return "auto";
    }
}

constexpr const char* taskrun_name(TaskRun t) noexcept {
    switch (t) {
        case TaskRun::kDefer:
            return "defer";
        case TaskRun::kCoop:
            return "coop";
        case TaskRun::kNone:
            return "none";
        default:
            return "auto";
    }
}

}  // namespace fp::net
