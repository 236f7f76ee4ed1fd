#include "app/proxy.hpp"

namespace fp::app {

Proxy::Proxy(const Config& config) : config_(config), shared_(config.worker.listeners.size()) {}

Proxy::~Proxy() {
    stop();
}

void Proxy::start() {
    for (unsigned i = 0; i < config_.workers; ++i) {
        workers_.push_back(std::make_unique<net::Worker>(config_.worker, shared_, i));
        try {
            workers_.back()->start();
        } catch (...) {
            workers_.pop_back();
            stop();
            throw;
        }
    }
}

void Proxy::stop() {
    for (auto& w : workers_)
        w->stop();
}

void Proxy::report(std::ostream& out) const {
    // A counter summed over the workers: tcp(&net::WorkerStats::accepted),
    // udp(&net::UdpStats::...).
    auto tcp = [&](Counter net::WorkerStats::*c) {
        std::uint64_t n = 0;
        for (const auto& w : workers_)
            n += (w->stats().*c).get();
        return n;
    };
    auto udp = [&](Counter net::UdpStats::*c) {
        std::uint64_t n = 0;
        for (const auto& w : workers_)
            n += (w->udp_stats().*c).get();
        return n;
    };
    std::size_t pages = 0;
    long fds = 0;
    for (const auto& w : workers_) {
        pages += w->leaked_pages();
        fds += w->leaked_fds();
    }
    using net::WorkerStats;
    out << "fragproxy: connections accepted " << tcp(&WorkerStats::accepted) << ", refused "
        << tcp(&WorkerStats::refused) << ", closed " << tcp(&WorkerStats::closed) << " ("
        << tcp(&WorkerStats::resets) << " reset), upstream failures "
        << tcp(&WorkerStats::upstream_failures) << "; bytes " << tcp(&WorkerStats::bytes_client)
        << " client->upstream, " << tcp(&WorkerStats::bytes_upstream) << " upstream->client\n"
        << "fragproxy: at exit: pages in use " << pages << ", fds open " << fds << "\n";
    if (config_.worker.udp_listeners.empty()) return;
    using net::UdpStats;
    out << "fragproxy: udp: datagrams in " << udp(&UdpStats::datagrams_in) << ", out "
        << udp(&UdpStats::datagrams_out) << "; sessions " << udp(&UdpStats::sessions)
        << ", expired " << udp(&UdpStats::sessions_expired) << ", refused "
        << udp(&UdpStats::sessions_refused) << "; dropped for want of buffers "
        << udp(&UdpStats::dropped_no_buffer) << ", upstream errors "
        << udp(&UdpStats::upstream_errors) << "; sendmsg calls " << udp(&UdpStats::sends)
        << " (GSO batches refused by the path " << udp(&UdpStats::gso_refused)
        << "); receives that waited for buffers " << udp(&UdpStats::buffer_waits) << "\n";
}

bool Proxy::leaked() const {
    for (const auto& w : workers_)
        if (w->leaked_pages() || w->leaked_fds()) return true;
    return false;
}

}  // namespace fp::app
