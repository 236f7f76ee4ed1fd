#pragma once
// What a worker needs to know, as plain values: the app layer fills these from the YAML config,
// so net/ never sees YAML.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "alloc/counter.hpp"
#include "alloc/page_pool.hpp"
#include "net/address.hpp"

namespace fp::net {

using Millis = std::chrono::milliseconds;

// How TCP receives land in memory (net/features.hpp: what each needs, how auto picks).
enum class RecvPath : std::uint8_t { kAuto, kIncremental, kFragments };

// Counters of one listener or upstream for one worker: each worker writes only its own (a cache
// line of its own: no sharing on the data path); the admin thread reads them.
struct alignas(64) ListenerCounters {
    Counter accepted, rejected, bytes_client, bytes_upstream;
};
struct alignas(64) UpstreamCounters {
    Counter connects, connect_failures;
};

// Per listener address, shared by every worker and kept across reloads while the listener stays:
// enforces max_connections across the workers; its counters per worker. Owned by the app layer.
struct ListenerShared {
    explicit ListenerShared(unsigned workers)
        : per_worker(std::make_unique<ListenerCounters[]>(workers)) {}
    std::atomic<std::uint32_t> connections{0};
    std::unique_ptr<ListenerCounters[]> per_worker;
};

// Per upstream address (every listener that names it), kept across reloads. App-owned.
struct UpstreamShared {
    explicit UpstreamShared(unsigned workers)
        : per_worker(std::make_unique<UpstreamCounters[]>(workers)) {}
    std::unique_ptr<UpstreamCounters[]> per_worker;
};

struct TcpListenerSettings {
    std::string name;
    SockAddr listen;
    std::vector<SockAddr> upstreams;
    Millis connect_timeout{5000};
    Millis idle_timeout{300000};
    Millis send_stall_timeout{60000};  // a queue that makes no progress toward its peer: reset
    std::uint32_t max_connections = 10000;
    std::uint32_t max_inflight_bytes = 1024 * 1024;  // per direction
    bool share_port = false;           // join another process's SO_REUSEPORT group on this address
    ListenerShared* shared = nullptr;  // set by the app layer before the workers see it
    std::vector<UpstreamShared*> upstream_shared;  // one per upstream, set by the app layer too
};

struct UdpListenerSettings {
    std::string name;
    SockAddr listen;
    std::vector<SockAddr> upstreams;
    Millis session_timeout{30000};
    std::uint32_t max_sessions = 10000;           // per worker
    std::uint32_t max_sessions_per_source = 256;  // per client IP, per worker
    std::uint32_t max_responses = 0;  // upstream datagrams per client datagram; 0 = no limit
    bool share_port = false;
};

struct WorkerSettings {
    PoolConfig memory;
    // UDP receives: one datagram per buffer (a datagram must never be split), so pages of order 5
    // (128 KiB) hold the largest (65507 bytes) with the recvmsg header and source address.
    PoolConfig udp_memory{std::size_t{16} << 20, 5, 0, false};
    unsigned udp_recv_buffers = 32;
    std::vector<UdpListenerSettings> udp_listeners;
    unsigned buf_ring_pages = 16;             // pages offered to the kernel for receives at once
    RecvPath recv_path = RecvPath::kAuto;     // resolved before the workers start
    std::uint32_t recv_fragment = 16 * 1024;  // kFragments: bytes per receive buffer
    std::vector<TcpListenerSettings> listeners;
};

}  // namespace fp::net
