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
#include "net/base/address.hpp"
#include "net/base/modes.hpp"
#include "net/policy/balance.hpp"
#include "net/policy/route.hpp"
#include "net/policy/source_policy.hpp"
#include "net/wire/proxy_header.hpp"

namespace fp::net {

using Millis = std::chrono::milliseconds;

// Counters of one listener or upstream for one worker: each worker writes only its own (a cache
// line of its own: no sharing on the data path); the admin thread reads them.
struct alignas(64) ListenerCounters {
    Counter accepted, rejected, bytes_client, bytes_upstream;  // bytes: TCP and UDP payload
    Counter sessions, datagrams_client, datagrams_upstream;    // UDP: sessions opened, datagrams
    Counter denied, source_capped, source_rate_limited;        // refused by the source policy
    Counter no_upstream;                              // refused: every upstream out (health checks)
    Counter untrusted, proxy_invalid, proxy_timeout;  // accept_proxy refusals
    Counter no_route, hello_invalid, hello_timeout;   // routes refusals (by ClientHello)
};
struct alignas(64) UpstreamCounters {
    Counter connects, connect_failures;
    Counter active;  // connections (or UDP sessions) of this worker assigned to it (a gauge)
};

// Per listener address, shared by every worker and kept across reloads while the listener stays:
// enforces max_connections across the workers; its counters per worker. Owned by the app layer.
struct ListenerShared {
    explicit ListenerShared(unsigned workers)
        : per_worker(std::make_unique<ListenerCounters[]>(workers)) {}
    std::atomic<std::uint32_t> connections{0};
    std::unique_ptr<ListenerCounters[]> per_worker;
    // Per-source counts and buckets, made (by the app layer, before any worker sees a
    // configuration that limits sources) the first time this listener limits them; kept after.
    std::unique_ptr<SourceTable> sources;
};

// Per upstream address (every listener that names it), kept across reloads. App-owned.
// Health: `up` is written by the health checker (the control thread) and, passively, by a
// worker whose connect failed the fall-th time in a row (only with a health check, which alone
// brings it back up); every worker reads it at each pick. No lock: one relaxed atomic each.
struct UpstreamShared {
    explicit UpstreamShared(unsigned n)
        : workers(n), per_worker(std::make_unique<UpstreamCounters[]>(n)) {}
    bool usable() const noexcept { return up.load(std::memory_order_relaxed); }
    void connect_failed() noexcept {
        const std::uint32_t f = fall.load(std::memory_order_relaxed);
        if (f && failures.fetch_add(1, std::memory_order_relaxed) + 1 >= f)
            up.store(false, std::memory_order_relaxed);
    }
    void connect_ok() noexcept {
        if (failures.load(std::memory_order_relaxed)) failures.store(0, std::memory_order_relaxed);
    }
    std::atomic<bool> up{true};
    std::atomic<std::uint32_t> failures{0};  // connects failed in a row (any worker)
    std::atomic<std::uint32_t> fall{0};      // passive checks: 0 off (no health check)
    // Its connections across the workers (relaxed reads of each worker's own gauge).
    std::uint64_t active() const noexcept {
        std::uint64_t n = 0;
        for (unsigned w = 0; w < workers; ++w)
            n += per_worker[w].active.get();
        return n;
    }
    unsigned workers;
    std::unique_ptr<UpstreamCounters[]> per_worker;
};

// Where a listener's new connections or sessions go (net/policy/balance.hpp).
struct Balancing {
    Balance balance = Balance::kRoundRobin;
    std::vector<std::uint32_t> weights;         // one per upstream
    std::shared_ptr<const MaglevTable> maglev;  // balance: source_hash
};

// Who may connect (allow/deny), and how much per source address; checked at accept.
struct SourcePolicy {
    std::shared_ptr<const CidrList> acl;  // null: everyone
    std::uint32_t max_connections = 0;    // max_connections_per_source; 0: no cap
    RateLimit rate;                       // new_connections_per_source
    bool limits() const noexcept { return max_connections || rate.count; }
    bool any() const noexcept { return acl || limits(); }
};

// TCP keepalive (SO_KEEPALIVE with its three timers), on the client side (set on the listening
// socket: accepted sockets inherit it) and/or the upstream side.
struct Keepalive {
    bool client = false, upstream = false;
    int idle_s = 60, interval_s = 10, count = 5;  // ints: what setsockopt reads
};

// health_check: {interval, timeout, rise, fall}: a TCP connect to each upstream every interval
// (app/health.hpp); fall failures in a row (checks, or connects of clients) take it out, rise
// passed checks bring it back.
struct HealthCheck {
    bool enabled = false;
    Millis interval{2000}, timeout{1000};
    std::uint32_t rise = 2, fall = 3;
};

// accept_proxy: {versions: [v1, v2], trusted: [CIDR, ...], timeout: 3s}: connections start with
// a PROXY protocol header (net/wire/proxy_header.hpp) from a trusted peer; the client it names is
// the client (policy, balance, logs, send_proxy).
struct AcceptProxy {
    bool enabled = false;
    bool v1 = true, v2 = true;
    std::shared_ptr<const CidrList> trusted;  // null: any peer may send one
    Millis timeout{3000};                     // for the whole header
};

struct TcpListenerSettings {
    std::string name;
    SockAddr listen;
    std::vector<SockAddr> upstreams;
    Balancing balancing;
    SourcePolicy policy;
    Keepalive keepalive;
    std::uint8_t send_proxy = 0;  // the PROXY protocol header to the upstream: 0 none, 1 v1, 2 v2
    TlvTypes pass_tlvs;           // v2: the accepted header's TLVs of these types go on with it
    bool proxy_crc32c = false;    // v2: a CRC32C TLV on the header sent
    HealthCheck health;
    AcceptProxy accept_proxy;
    Routing routing;  // routes: by the ClientHello's server name (net/policy/route.hpp)
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
    Balancing balancing;
    std::shared_ptr<const CidrList> acl;           // allow/deny for new sessions; null: everyone
    std::vector<UpstreamShared*> upstream_shared;  // for least_conn across workers (app layer)
    ListenerShared* shared = nullptr;  // its counters (by address, kept across reloads; app layer)
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
    Backend backend = Backend::kAuto;         // ... this too
    std::uint32_t recv_fragment = 64 * 1024;  // kFragments: bytes per receive buffer (a page)
    TaskRun taskrun = TaskRun::kAuto;         // io_uring backend only; at start (as backend)
    // What auto resolved to at start (the one probe's setup flags): every worker's ring takes it.
    // kAuto where nothing resolved it (each ring then tries for itself, as Ring::best).
    TaskRun taskrun_probed = TaskRun::kAuto;
    bool udp_gso = true;  // UDP sends batched with UDP_SEGMENT (GSO); at start
    // TCP connections on the ring's direct descriptors (its fixed-file table) where the kernel
    // has them (6.8: accept and socket into the table, FIXED_FD_INSTALL); at start.
    bool direct_descriptors = true;
    // TCP sends of 3 KiB or more as zero-copy sendmsg (IORING_OP_SENDMSG_ZC, 6.1): the kernel
    // sends from the fragments' pages themselves, which stay held until its notification. Pays
    // on NICs; loopback copies anyway (measured: bench peer fragproxy-zc). Off by default; at
    // start.
    bool send_zc = false;
    // TCP receives as bundles (IORING_RECVSEND_BUNDLE, 6.10): one completion fills as many ring
    // buffers as the socket has bytes for, instead of stopping at a buffer's end; at start.
    bool bundles = true;
    // NAPI busy polling of the ring's sockets' receive queues, this long per wait (io_uring's own,
    // 6.9: io_uring_register_napi); 0 = off. For NIC deployments (loopback has no NAPI); at start.
    std::uint32_t napi_busy_poll_us = 0;
    // A worker busy with UDP (a pass that handled kBulkUdpCqes UDP CQEs or more, worker.cpp)
    // waits next for a batch of CQEs, but no longer than this once one has come (io_uring's min
    // timeout, 6.12): fuller GSO batches under a flood, like a NIC's interrupt coalescing;
    // otherwise a worker waits for one CQE as before. 0 = off; at start.
    std::uint32_t batch_wait_us = 50;
    std::vector<TcpListenerSettings> listeners;
};

}  // namespace fp::net
