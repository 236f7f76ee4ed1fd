#pragma once
// The access log's hand-over: when a TCP connection or UDP session ends, its worker writes one
// AccessRecord (fixed size, no allocation) into its own AccessQueue; the logging thread (app/)
// takes them out, formats and writes them. One producer (the worker), one consumer (the logger):
// a ring of records with an acquire/release pair per record, never a lock and never a wait. A
// full queue drops the record and counts it: the worker is never held up by the log.
#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "alloc/counter.hpp"
#include "net/base/address.hpp"

namespace fp::net {

// How a connection or session ended.
enum class AccessEnd : std::uint8_t {
    kNone,
    kClientClose,     // the client's FIN came first, then both directions finished
    kUpstreamClose,   // the upstream's FIN came first
    kReset,           // an error or reset on either side, or data cut
    kIdleTimeout,     // timeouts.idle (TCP), session_timeout (UDP)
    kSendStall,       // timeouts.send_stall
    kConnectFailure,  // no upstream could be connected
    kRejected,        // refused at accept (max_connections)
    kDrained,         // closed by the drain deadline or a stop
};
inline constexpr std::size_t kAccessEnds = std::size_t(AccessEnd::kDrained) + 1;

// As the access log and the metrics' `how` label write it.
constexpr const char* access_end_name(AccessEnd e) noexcept {
    switch (e) {
        case AccessEnd::kClientClose:
            return "client_close";
        case AccessEnd::kUpstreamClose:
            return "upstream_close";
        case AccessEnd::kReset:
            return "reset";
        case AccessEnd::kIdleTimeout:
            return "idle_timeout";
        case AccessEnd::kSendStall:
            return "send_stall";
        case AccessEnd::kConnectFailure:
            return "connect_failure";
        case AccessEnd::kRejected:
            return "rejected";
        case AccessEnd::kDrained:
            return "drained";
        case AccessEnd::kNone:
            break;
    }
    return "unknown";
}

// An IPv4 or IPv6 address and port, compact (no sockaddr_storage in a record).
struct AccessAddr {
    std::uint8_t family = 0;  // 0: none (a rejected client has no upstream)
    std::uint16_t port = 0;   // host order
    std::uint8_t addr[16] = {};

    static AccessAddr of(const sockaddr* sa) noexcept {
        AccessAddr a;
        if (sa->sa_family == AF_INET) {
            const auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
            a.family = AF_INET;
            a.port = ntohs(v4->sin_port);
            std::memcpy(a.addr, &v4->sin_addr, 4);
        } else if (sa->sa_family == AF_INET6) {
            const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
            a.family = AF_INET6;
            a.port = ntohs(v6->sin6_port);
            std::memcpy(a.addr, &v6->sin6_addr, 16);
        }
        return a;
    }
    static AccessAddr of(const SockAddr& s) noexcept { return of(s.sa()); }
};

struct AccessRecord {
    std::uint64_t start_ms = 0, end_ms = 0;  // the worker's clock (CLOCK_MONOTONIC_COARSE)
    std::uint64_t bytes_to_upstream = 0, bytes_to_client = 0;
    AccessAddr client, upstream;
    AccessEnd end = AccessEnd::kNone;
    bool udp = false;
    char listener[32] = {};  // its name, cut to 31 bytes

    void set_listener(const std::string& name) noexcept {
        const std::size_t n = name.size() < sizeof listener ? name.size() : sizeof listener - 1;
        std::memcpy(listener, name.data(), n);
        listener[n] = '\0';
    }
};

class AccessQueue {
  public:
    static constexpr std::uint32_t kRecords = 4096;  // per worker; a power of two

    AccessQueue() : ring_(std::make_unique<AccessRecord[]>(kRecords)) {}

    // The worker: false (and counted) when the logger is kRecords behind.
    bool push(const AccessRecord& r) noexcept {
        const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
        if (tail - head_.load(std::memory_order_acquire) == kRecords) {
            dropped.add();
            return false;
        }
        ring_[tail % kRecords] = r;
        tail_.store(tail + 1, std::memory_order_release);
        return true;
    }
    // The logger.
    bool pop(AccessRecord& out) noexcept {
        const std::uint32_t head = head_.load(std::memory_order_relaxed);
        if (head == tail_.load(std::memory_order_acquire)) return false;
        out = ring_[head % kRecords];
        head_.store(head + 1, std::memory_order_release);
        return true;
    }

    Counter dropped;  // records the full queue refused

  private:
    std::unique_ptr<AccessRecord[]> ring_;
    alignas(64) std::atomic<std::uint32_t> head_{0};  // the logger's
    alignas(64) std::atomic<std::uint32_t> tail_{0};  // the worker's
};

}  // namespace fp::net
