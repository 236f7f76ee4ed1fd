#pragma once
// What a worker needs to know, as plain values: the app layer fills these from the YAML config,
// so net/ never sees YAML.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "alloc/page_pool.hpp"
#include "net/address.hpp"

namespace fp::net {

using Millis = std::chrono::milliseconds;

struct TcpListenerSettings {
    std::string name;
    SockAddr listen;
    std::vector<SockAddr> upstreams;
    Millis connect_timeout{5000};
    Millis idle_timeout{300000};
    std::uint32_t max_connections = 10000;
    std::uint32_t max_inflight_bytes = 1024 * 1024;  // per direction
};

struct WorkerSettings {
    PoolConfig memory;
    unsigned buf_ring_pages = 16;  // pages offered to the kernel for receives at once
    bool send_zc = false;          // send_zc with fixed buffers instead of send
    std::vector<TcpListenerSettings> listeners;
};

}  // namespace fp::net
